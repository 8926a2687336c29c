"""What follows one network's training: the analysis pipeline, export, fine-tuning and its
comparison, back-tracking, figures."""
