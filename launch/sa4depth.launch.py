"""Perception node (depth, point cloud, visual odometry) on a live camera, optionally with RViz.

    ros2 launch sa4depth_ros sa4depth.launch.py image_topic:=/camera/image_raw \
        camera_info_topic:=/camera/camera_info checkpoint:=/path/to/model.pt

Parameters come from config/sa4depth.yaml; the arguments below override a few of them.
`sa4depth-run` starts the same graph without the launch package (see sa4depth_ros/run.py).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("sa4depth_ros")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "sa4depth.yaml"]),
                              description="perception_node parameters"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="model checkpoint; empty runs untrained networks (with a warning)"),
        DeclareLaunchArgument("image_topic", default_value="image", description="input sensor_msgs/Image"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera_info",
                              description="input sensor_msgs/CameraInfo"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("scale_mode", default_value="relative", description="relative | fixed | camera_height"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="start RViz"),
        DeclareLaunchArgument("rviz_config", default_value=PathJoinSubstitution([share, "config", "sa4depth.rviz"]),
                              description="RViz configuration"),
    ]
    perception = Node(
        package="sa4depth_ros",
        executable="perception_node",
        name="perception_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
                "scale_mode": ParameterValue(LaunchConfiguration("scale_mode"), value_type=str),
                "device": ParameterValue(LaunchConfiguration("device"), value_type=str),
            },
        ],
        remappings=[
            ("image", LaunchConfiguration("image_topic")),
            ("camera_info", LaunchConfiguration("camera_info_topic")),
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", LaunchConfiguration("rviz_config")],
        remappings=[("/image", LaunchConfiguration("image_topic"))],
        condition=IfCondition(LaunchConfiguration("use_rviz")),
    )
    return LaunchDescription(arguments + [perception, rviz])
