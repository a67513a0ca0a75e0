"""The networks: architectures and where their starting weights come from, attribute heads, the frozen ImageNet
classifier, the optimiser."""
