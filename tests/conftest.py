import os
os.environ.setdefault("SPARK_VERSION", "3.5")
