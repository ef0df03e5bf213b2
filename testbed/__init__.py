"""Test and demo material: never imported by migrator/, converters/ or runtime/, and not installed
with the package. The tiny guest image builder (`testbed.guestimage`) and `make demo`
(`python -m testbed.demo`) live here; they run from a checkout.
"""
