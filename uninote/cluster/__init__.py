"""The batch jobs on a Ray cluster: ``embed`` (Ray Data, an actor pool running the model) and
``i2i`` (index parts held by actors, query blocks fanned out to all of them and merged).

Nothing here imports Ray at module level, and nothing else in ``uninote`` imports this package
unless ``--ray`` is given: a local run needs neither a cluster nor Ray. The outputs are the ones
of the one-machine jobs (``uninote.embedding_store.embed_to_disk``,
``uninote.index.i2i_table.i2i_local``), folder for folder: the same shards, the same Parquet parts.
Workers read and write the job's folders by path, so on a real cluster those live on storage
every node mounts.
"""
