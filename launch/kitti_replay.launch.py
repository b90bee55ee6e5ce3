"""Replay a KITTI bag (written by sa4depth-kitti2bag) through the graph of sa4depth.launch.py,
with RViz when rviz2 is installed.

    ros2 launch sa4depth_ros kitti_replay.launch.py bag:=/data/kitti_00_bag checkpoint:=/path/model.pt

The bag player publishes /clock and every node runs on the bag's time (use_sim_time). Scale
comes from KITTI's camera height (1.65 m) unless scale_mode says otherwise (scale_mode:=relative
gives network units, not metres). The bag's /tf_static places the camera on base_link, and the
perception node takes that extrinsic from TF. Every argument of
sa4depth.launch.py (checkpoint, namespace, device, online_learning, ...) applies here too; the
ones declared below only change its defaults for KITTI bags. `sa4depth-run --bag BAG` starts the
same graph without the launch package.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("sa4depth_ros")
    arguments = [
        DeclareLaunchArgument("bag", description="ROS 2 bag directory to play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("loop", default_value="false", description="play the bag in a loop"),
        DeclareLaunchArgument("image_topic", default_value="/kitti/camera_color_left/image_raw",
                              description="image topic in the bag"),
        DeclareLaunchArgument("camera_info_topic", default_value="/kitti/camera_color_left/camera_info",
                              description="CameraInfo topic in the bag"),
        DeclareLaunchArgument("scale_mode", default_value="camera_height",
                              description="camera_height | fixed | relative (network units, not metres)"),
        DeclareLaunchArgument("camera_height", default_value="1.65",
                              description="metres above the road: KITTI's camera height"),
        DeclareLaunchArgument("use_rviz", default_value="true", description="start RViz"),
    ]
    # play once the perception node subscribes (it first loads its model): nothing is lost unseen
    player_arguments = [LaunchConfiguration("bag"), "--rate", LaunchConfiguration("rate"), "--clock",
                        "--wait-subscribers", "120", "--wait-for", LaunchConfiguration("image_topic"),
                        LaunchConfiguration("camera_info_topic")]
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
    graph = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "sa4depth.launch.py"])),
        launch_arguments={
            "image_topic": LaunchConfiguration("image_topic"),
            "camera_info_topic": LaunchConfiguration("camera_info_topic"),
            "scale_mode": LaunchConfiguration("scale_mode"),
            "camera_height": LaunchConfiguration("camera_height"),
            "use_rviz": LaunchConfiguration("use_rviz"),
            "use_sim_time": "true",
        }.items(),
    )
    return LaunchDescription(arguments + [player, looping_player, graph])
