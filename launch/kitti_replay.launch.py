"""Replay a KITTI bag (written by sa4depth-kitti2bag) through the perception node, with RViz.

    ros2 launch sa4depth_ros kitti_replay.launch.py bag:=/data/kitti_00_bag checkpoint:=/path/model.pt

The bag player publishes /clock, so every node runs on the bag's time (use_sim_time). Scale comes
from KITTI's camera height (1.65 m) unless scale_mode says otherwise. `sa4depth-run --bag BAG`
starts the same graph without the launch package.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("sa4depth_ros")
    arguments = [
        DeclareLaunchArgument("bag", description="ROS 2 bag directory to play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("loop", default_value="false", description="play the bag in a loop"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "sa4depth.yaml"]),
                              description="perception_node parameters"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="model checkpoint; empty runs untrained networks (with a warning)"),
        DeclareLaunchArgument("image_topic", default_value="/kitti/camera_color_left/image_raw",
                              description="image topic in the bag"),
        DeclareLaunchArgument("camera_info_topic", default_value="/kitti/camera_color_left/camera_info",
                              description="CameraInfo topic in the bag"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the perception node"),
        DeclareLaunchArgument("scale_mode", default_value="camera_height",
                              description="relative | fixed | camera_height"),
        DeclareLaunchArgument("camera_height", default_value="1.65", description="KITTI camera height in metres"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("use_rviz", default_value="true", description="start RViz"),
        DeclareLaunchArgument("rviz_config", default_value=PathJoinSubstitution([share, "config", "sa4depth.rviz"]),
                              description="RViz configuration"),
    ]
    player_arguments = [LaunchConfiguration("bag"), "--rate", LaunchConfiguration("rate"), "--clock"]
    player = Node(
        package="sa4depth_ros",
        executable="sa4depth-play",
        arguments=player_arguments,
        output="screen",
        condition=UnlessCondition(LaunchConfiguration("loop")),
    )
    looping_player = Node(
        package="sa4depth_ros",
        executable="sa4depth-play",
        arguments=player_arguments + ["--loop"],
        output="screen",
        condition=IfCondition(LaunchConfiguration("loop")),
    )
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
                "camera_height": ParameterValue(LaunchConfiguration("camera_height"), value_type=float),
                "device": ParameterValue(LaunchConfiguration("device"), value_type=str),
                "use_sim_time": True,
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
        parameters=[{"use_sim_time": True}],
        condition=IfCondition(LaunchConfiguration("use_rviz")),
    )
    return LaunchDescription(arguments + [player, looping_player, perception, rviz])
