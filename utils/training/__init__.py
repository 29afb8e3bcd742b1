"""Training: the loop, the optimizer and schedules, tf.distribute."""
