"""datanas: DATA / Ensemble Gumbel-Softmax architecture search for Keras 3 + TF 2."""

from setuptools import find_packages, setup

setup(
    name="datanas",
    version="0.2.0",
    description=("Differentiable ArchiTecture Approximation (DATA) with the Ensemble "
                 "Gumbel-Softmax estimator, for Keras 3 / TensorFlow 2"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["datanas", "datanas.*", "data_tf", "data_tf.*", "trainers",
                                    "trainers.*", "flags", "flags.*", "benchmarks",
                                    "benchmarks.*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorboard>=2.20",
        "tensorflow-datasets>=4.9",
        "tensorflow-text>=2.21,<2.22",
        "numpy",
        "absl-py",
    ],
    extras_require={
        # scikit-learn provides the zero-download 'digits' dataset.
        "digits": ["scikit-learn"],
        # Pillow reads VOC's palette masks as stored class indices (train_voc).
        "segmentation": ["Pillow"],
        # Figures of the ablation runner (datanas.analysis.ablations).
        "plots": ["matplotlib"],
        # psutil: peak-memory sampling in benchmarks/search_step.py.
        "benchmarks": ["psutil"],
        # The suite runs the README's benchmark commands too (tests/test_benchmarks.py).
        "test": ["pytest", "pytest-xdist", "scikit-learn", "matplotlib", "Pillow", "psutil"],
    },
)
