"""Perception node (depth, point cloud, visual odometry) on a live camera, optionally with the
online-learning trainer node and RViz.

    ros2 launch sa4depth_ros sa4depth.launch.py image_topic:=/camera/image_rect \
        camera_info_topic:=/camera/camera_info camera_height:=0.42 checkpoint:=/path/to/model.pt

Metres by default: scale_mode is camera_height and camera_height (the camera's height above the
ground, in metres) has no default, so launching without it stops with launch's missing-argument
error instead of publishing depth and odometry in a guessed scale. `scale_mode:=relative` (network
units, a WARN in /diagnostics) or `fixed` still need a camera_height argument (any value, e.g. 0).

Parameters come from config/sa4depth.yaml (and config/trainer.yaml for the trainer); the
arguments below override a few of them. kitti_replay.launch.py includes this file.
`sa4depth-run` starts the same graph without the launch package (see sa4depth_ros/run.py).
RViz is optional (package.xml does not depend on it): use_rviz:=true starts it in the nodes'
namespace when rviz2 is installed and only logs a note when it is not.
"""
from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def _installed(package: str) -> bool:
    try:
        get_package_prefix(package)
    except PackageNotFoundError:
        return False
    return True


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
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes and their topics"),
        DeclareLaunchArgument("scale_mode", default_value="camera_height",
                              description="camera_height (metres from camera_height) | fixed | relative (network "
                                          "units, not metres)"),
        DeclareLaunchArgument("camera_height",
                              description="REQUIRED: the camera's height above the ground in metres, which sets "
                                          "the scale of depth, points and odometry (no default: a guessed height "
                                          "gives wrong metres; with scale_mode relative or fixed pass any value)"),
        DeclareLaunchArgument("image_transport", default_value="raw",
                              description="raw (sensor_msgs/Image on image_topic) | compressed "
                                          "(CompressedImage on image_topic/compressed)"),
        DeclareLaunchArgument("rectified_images", default_value="true",
                              description="true: rectified images (image_rect) used with CameraInfo P; false: raw "
                                          "images (image_raw) used with K and undistorted with D"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="run on /clock (bag replay)"),
        DeclareLaunchArgument("online_learning", default_value="false",
                              description="also start trainer_node, which fine-tunes on the stream and "
                                          "hands better models to the perception node"),
        DeclareLaunchArgument("trainer_params_file",
                              default_value=PathJoinSubstitution([share, "config", "trainer.yaml"]),
                              description="trainer_node parameters"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="start RViz"),
        DeclareLaunchArgument("rviz_config", default_value=PathJoinSubstitution([share, "config", "sa4depth.rviz"]),
                              description="RViz configuration"),
    ]
    inputs = [("image", LaunchConfiguration("image_topic")), ("camera_info", LaunchConfiguration("camera_info_topic"))]
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    image_transport = ParameterValue(LaunchConfiguration("image_transport"), value_type=str)
    rectified_images = ParameterValue(LaunchConfiguration("rectified_images"), value_type=bool)
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
                "image_transport": image_transport,
                "rectified_images": rectified_images,
                "use_sim_time": use_sim_time,
            },
        ],
        remappings=inputs,
    )
    trainer = Node(
        package="sa4depth_ros",
        executable="trainer_node",
        name="trainer_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("trainer_params_file"),
            {
                "init_checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
                "device": ParameterValue(LaunchConfiguration("device"), value_type=str),
                "image_transport": image_transport,
                "rectified_images": rectified_images,
                "use_sim_time": use_sim_time,
            },
        ],
        remappings=inputs,
        condition=IfCondition(LaunchConfiguration("online_learning")),
    )
    if _installed("rviz2"):
        rviz = Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            namespace=LaunchConfiguration("namespace"),  # the config's topics are relative
            arguments=["-d", LaunchConfiguration("rviz_config")],
            parameters=[{"use_sim_time": use_sim_time}],
            remappings=[("image", LaunchConfiguration("image_topic"))],
            condition=IfCondition(LaunchConfiguration("use_rviz")),
        )
    else:
        rviz = LogInfo(msg="rviz2 is not installed, so RViz does not start (install ros-$ROS_DISTRO-rviz2, "
                           "or pass use_rviz:=false)",
                       condition=IfCondition(LaunchConfiguration("use_rviz")))
    return LaunchDescription(arguments + [perception, trainer, rviz])
