"""Identify the animal in a photo: the network, its preprocessing, the knowledge base
and the answer rules. The only package that imports PyTorch; it knows nothing of mail.
"""
