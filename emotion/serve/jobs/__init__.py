"""Long media as jobs: a queue (huey, on SQLite or Redis), a job store, workers.

- :mod:`.store`: job records, the windows finished so far, results (written once),
  over huey's key-value storage, so the same code runs on SQLite and on Redis;
- :mod:`.queue`: the huey instance and its tasks (run a job, deliver a result),
  the worker-side life of a job (progress, heartbeat, cancel, retries);
- :mod:`.routes`: POST/GET/DELETE /jobs in the Flask app;
- :mod:`.worker`: the ``emotion-worker`` process (a huey consumer);
- :mod:`.batch`: ``predict.py --batch``, a folder of recordings through the queue.
"""
