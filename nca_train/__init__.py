"""Training and evaluation of segmentation cellular automata in PyTorch.

The package root imports no torch, so that the dataset readers in
:mod:`nca_train.data` serve torch-free callers such as the simulator's command.
"""
