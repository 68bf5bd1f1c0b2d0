"""The recipe's stages, one module each, with the typed config of each stage beside it:

    corpus.py       corpus    -> utterance manifest           (CorpusConfig)
    mixtures.py     mixtures  -> mixture WAVs + manifest      (MixStageConfig)
    features.py     features  -> feature shards + stats.json  (deepclust.features.extract.FeatureConfig)
    training.py     train     -> model.pt, history, curve     (ModelConfig, TrainConfig)
    separation.py   separate  -> separated sources            (SeparateConfig)
    evaluation.py   evaluate  -> results, summary, report.md  (EvaluateConfig)

Each module defines ``STAGE`` (a ``deepclust.pipeline.plan.StageDefinition``) and its ``plan_<stage>`` function.
Stage modules sit above every domain (they may use any of them, the reports and the archive job) and below the
recipe (``deepclust.recipe``), which registers and orders them.
"""
