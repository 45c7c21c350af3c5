"""Line anomaly flags: the flagging job, line features, the classifier and its training."""
