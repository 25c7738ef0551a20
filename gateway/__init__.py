"""The ClassOps school gateway: durable store-and-forward between a school's devices and the cloud."""
