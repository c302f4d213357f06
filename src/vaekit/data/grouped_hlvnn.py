"""Old home of :class:`HLVNNFolder` (now in :mod:`vaekit.data.grouped_sets`), kept so that
configs saved with ``class_path: vaekit.data.grouped_hlvnn.HLVNNFolder`` still load."""

from vaekit.data.grouped_sets import HLVNNFolder, hlvnn_levels

__all__ = ["HLVNNFolder", "hlvnn_levels"]
