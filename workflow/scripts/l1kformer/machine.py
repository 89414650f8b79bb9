"""What the machine that runs Snakemake shows, for scheduling decisions made when the workflow is parsed."""

import glob
import os


def gpus_visible():
    """Whether this machine shows an NVIDIA GPU (device files, or the driver's list), unless
    CUDA_VISIBLE_DEVICES hides them all."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "x").strip() in ("", "-1"):
        return False
    driver = "/proc/driver/nvidia/gpus"
    return bool(glob.glob("/dev/nvidia[0-9]*")) or (os.path.isdir(driver) and bool(os.listdir(driver)))
