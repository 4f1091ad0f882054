"""The dev stack: the live service, Redis and Label Studio as local processes, for
``ls-panoptic up`` (``--demo``), the end-to-end tests and the benchmarks.

supervisor        the one process supervisor: free ports, spawn with a log, wait until ready,
                  stop by PID and session, log tails
services          the backend, a worker and one-shot ``ls-panoptic`` commands as processes
redis_server      a throwaway ``redis-server``
labelstudio_venv  where Label Studio's own virtualenv is, and installing it there
labelstudio       one Label Studio server, started and stopped
synthetic         synthetic Label Studio projects (images + export)
stack, run, steps what ``up`` does, the state of one run, how a step fails
demo, demo_labelstudio, annotate, verify
                  the steps of ``up --demo``

Depends on ``ls_panoptic``, ``worker`` and ``backend``; none of them depends on it.
"""
