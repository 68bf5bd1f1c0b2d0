"""The recipe's stages, one module each, with the typed config of each stage beside it:

    corpus.py       corpus    -> utterance manifest           (CorpusConfig)
    mixtures.py     mixtures  -> mixture WAVs + manifest      (MixStageConfig)
    features.py     features  -> feature shards + stats.json  (deepclust.features.extract.FeatureConfig)
    train.py        train     -> model.pt, history, curve     (ModelConfig, TrainConfig)
    separate.py     separate  -> separated sources            (SeparateConfig)
    evaluate.py     evaluate  -> results, summary, report.md  (EvaluateConfig)

One name per stage (issue 28): the stage, its command (``deepclust mixtures``, ``deepclust train``, ...), its module
here, its ``plan_<name>`` function and its manifest kind (``deepclust.storage.manifests``) all use it; the config
field of ``ReproduceConfig`` and ``--set`` paths too (``mixtures.scale``), except ``model``/``train`` (the network
and the training recipe are two configs of the train stage). Old names work for a release (``moved_modules``).

Each module defines ``STAGE`` (a ``deepclust.pipeline.plan.StageDefinition``) and its ``plan_<stage>`` function.
Stage modules sit above every domain (they may use any of them, the reports and the archive job) and below the
recipe (``deepclust.recipe``), which registers and orders them.
"""
