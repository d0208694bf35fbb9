"""Training: the loop (`loop`), its optimizer and schedule (`optim`), checkpoints and the resume
key (`checkpoints`), and running under torchrun (`distributed`)."""
