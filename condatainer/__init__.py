"""condatainer: a whole conda environment in one ext3 image, used through Apptainer."""

__version__ = "0.1.0"
