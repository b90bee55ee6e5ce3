"""ament_python / pip packaging for sa4depth_ros and sa4depth_core."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "sa4depth_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["sa4depth_ros", "sa4depth_ros.*", "sa4depth_core", "sa4depth_core.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.py") + glob("launch/*.xml")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
    ],
    python_requires=">=3.10",
    install_requires=["setuptools", "numpy", "pyyaml", "transforms3d", "tqdm"],
    extras_require={"test": ["pytest", "pytest-timeout"]},
    zip_safe=True,
    maintainer="sa4depth_ros developers",
    maintainer_email="sa4depth@example.com",
    description="Self-supervised monocular depth and scale-consistent visual odometry for ROS 2 (SA4Depth).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sa4depth-train = sa4depth_core.train.cli:main",
            "sa4depth-eval = sa4depth_core.eval.cli:main",
            "sa4depth-synth = sa4depth_core.data.synth:main",
            "sa4depth-kitti2bag = sa4depth_core.data.kitti2bag:main",
            "sa4depth-karlsruhe = sa4depth_core.data.karlsruhe:main",
            "sa4depth-export = sa4depth_core.export_cli:main",
            "sa4depth-play = sa4depth_ros.bag_player:main",
            "sa4depth-run = sa4depth_ros.run:main",
            "perception_node = sa4depth_ros.perception_node:main",
            "trainer_node = sa4depth_ros.trainer_node:main",
        ],
    },
)
