"""The networks: recurrent cells, the CIFAR-10 CNN front end, the delayed classifier."""
