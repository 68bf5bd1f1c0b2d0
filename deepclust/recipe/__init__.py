"""The recipe: the stages registered and ordered (``registry``), the end-to-end config composed of the stage
configs (``config``), the named recipes (``presets``: paper, dpcl++, demo, quick), ``--set`` overrides
(``overrides``), a request resolved to one config (``resolve``), the inputs checked before the first stage
(``preflight``) and the whole run by hand (``reproduce``). It sits above the stages (``deepclust.stages``) and
below the command line (``deepclust.cli``)."""
