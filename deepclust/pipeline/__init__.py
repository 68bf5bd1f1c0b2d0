"""The domain-free stage framework: the stage store (``store``), what a stage is made of (``plan``) and the one
driver that runs any stage (``driver``). It knows no stage by name and imports no domain: the stages live in
``deepclust.stages`` and the recipe that orders them in ``deepclust.recipe``, both above every domain."""
