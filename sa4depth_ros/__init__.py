"""sa4depth_ros: thin rclpy adapters around sa4depth_core.

Modules convert messages to numpy and back (image_codec, camera_info, cloud), choose QoS (qos),
pair image streams (sync), publish TF (tf_out) and keep DDS on loopback (ros_env). They hold no
maths of their own: every numeric algorithm lives in sa4depth_core.
"""
