"""SA4Depth core: self-supervised monocular depth and pose with feature-metric LM pose refinement.

Pure torch + numpy; never imports rclpy, so it runs on a GPU server without ROS.
"""

__version__ = "0.1.0"
