"""Where a console's time goes when statistics arrive: records applied per console CPU-second and bytes per
running VM per sample, for the ``_stats`` encoding in the tree (``new``) and the old map form (``old``, the
baseline, bench/ingest/legacy.py) in the same run (issue 12).

Two processes on loopback. The agents' process (:mod:`.sender`) runs ``--agents`` real agents on fake
hypervisors of ``--domains`` running domains each; the console locates and loads them over AMQP as usual.
Then, for each batch size, number of subscribers and encoding, it pushes realistic ``_stats`` batches
(:mod:`.traffic`: every row's cpuTime grew, now and then memory or state) through the agents' listeners as
fast as the console applies them, for ``--seconds``. This process runs the Console and nothing else of weight
(:mod:`.measure`); a run's cost is its CPU time (every thread: receive, decode, apply, subscribers) from the
first message to the last applied and the subscribers drained. For the old encoding, this process's codec
decodes the map form (:mod:`.decoding`), never product code.

With ``--rate R`` it replays a fleet's messages one at a time instead (:mod:`.pacing`, :mod:`.paced`): R
heartbeats, statistics batches or both alternating per second, spread evenly; reported per kind, the console's
CPU per wall second and per message, less what it spends idle.

    python -m bench.ingest                              # the make bench run (~40 s on 2 cores)
    python -m bench.ingest --rate 200 --seconds 10      # paced: idle, heartbeat, stats, mix (~60 s)
    python -m bench.ingest --agents 10 --seconds 5 --json ingest.json
    python -m bench.ingest --batches 1000 --subscribers 1 --encodings new --seconds 20   # to profile
"""
