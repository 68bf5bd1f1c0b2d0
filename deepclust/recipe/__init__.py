"""The recipe: the stages registered and ordered (``registry``), the end-to-end config composed of the stage
configs (``config``) and the whole run by hand (``reproduce``). It sits above the stages (``deepclust.stages``)
and below the command line (``deepclust.cli``)."""
