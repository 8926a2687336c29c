"""haviv_tf: delayed-classification RNNs, their slow points, and speed-regularised memory."""
