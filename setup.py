"""haviv_tf: train RNNs on delayed classification, find their slow points, control their memory."""

import setuptools

setuptools.setup(
    name="haviv_tf",
    version="0.1.0",
    description=("Reproduction of Haviv, Rivkind & Barak (ICML 2019), Understanding and "
                 "Controlling Memory in Recurrent Neural Networks, in TensorFlow/Keras"),
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["haviv_tf", "haviv_tf.*"]),
    package_data={"haviv_tf": ["data/mnist_sample.npz", "data/README.md"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<3.16",  # the range tested (private APIs: haviv_tf/models/keras_private.py)
        "tensorflow-datasets>=4.9.9,<5",
        "tensorboard>=2.21,<2.22",
        "numpy>=1.26,<3",
        "scipy>=1.13,<2",
        "matplotlib>=3.8,<4",
        "absl-py>=2.1,<3",
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.5", "pdoc>=15,<17"],
                    # benchmarks/fpf_comparison.py (FixedPointFinder's PyTorch version) and
                    # benchmarks/brainpy_comparison.py (BrainPy's SlowPointFinder, JAX on CPU).
                    "benchmark": ["torch>=2.1", "brainpy>=2.8", "jax>=0.4", "jaxlib>=0.4"]},
    entry_points={"console_scripts": ["haviv_tf=haviv_tf.main:run"]},
)
