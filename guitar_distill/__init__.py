"""guitar-distill: a teacher distilled into a small student, exported to ONNX and TFLite and benchmarked side by
side, for a Raspberry Pi or a phone. From Python (docs/api.md):

    import guitar_distill as gd
    data = gd.ImageFolder("photos/", image_size=96)
    student = gd.distill(teacher, student, data, epochs=20)
    files = gd.export(student, "out/", formats=["tflite_int8", "onnx_fp32"], calibration=data)
    table = gd.benchmark(files, data=data, threads=[1, 2])
    gd.bundle(files, "my-bundle/", labels=data.classes, title="Bird feeder visitors")

The names load on first use: `import guitar_distill` alone imports no TensorFlow.
"""

import sys
import types


class _Api:
    """One of the API's names. `distill` and `export` are also the stages' packages, and the import system
    sets a loaded package as an attribute of its parent: that setting is kept aside, so `gd.distill` stays
    the function (the packages are still `guitar_distill.distill` in sys.modules, for every import)."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, module, owner=None):
        from guitar_distill import api

        return getattr(api, self.name)

    def __set__(self, module, value):
        module.__dict__[f"_{self.name}_module"] = value


class _Toolkit(types.ModuleType):
    ImageFolder = _Api()
    distill = _Api()
    export = _Api()
    benchmark = _Api()
    bundle = _Api()
    Exported = _Api()
    BenchmarkTable = _Api()


sys.modules[__name__].__class__ = _Toolkit
__all__ = ["ImageFolder", "distill", "export", "benchmark", "bundle", "Exported", "BenchmarkTable"]
