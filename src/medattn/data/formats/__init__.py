"""Format adapters: each a torch Dataset plus a scanner returning a table
(file, label(s), group, split if official). :func:`scan` and :func:`open_dataset` dispatch by name."""

from __future__ import annotations

from medattn.data.formats.csv_manifest import CSVDataset, scan_csv
from medattn.data.formats.cxr14 import FINDINGS, CXR14Dataset, read_bbox_list, scan_cxr14
from medattn.data.formats.folders import FolderDataset, class_order, scan_folders
from medattn.data.formats.idc import IDCDataset, idc_mosaic, parse_idc_name, scan_idc
from medattn.data.formats.monuseg_xml import (
    MoNuSegDataset,
    read_aperio_xml,
    scan_monuseg,
    write_aperio_xml,
    xml_to_instance_mask,
)
from medattn.data.formats.pcam_h5 import PCamH5Dataset, scan_pcam
from medattn.data.formats.registry import (
    FORMATS,
    detect_format,
    open_dataset,
    read_item,
    scan,
    select_split,
)
from medattn.data.formats.seg_pairs import SegPairsDataset, instance_count, scan_seg_pairs
from medattn.data.formats.table import TableDataset

__all__ = [
    "FORMATS", "detect_format", "scan", "open_dataset", "read_item", "select_split", "TableDataset",
    "PCamH5Dataset", "scan_pcam",
    "FolderDataset", "scan_folders", "class_order",
    "CSVDataset", "scan_csv",
    "CXR14Dataset", "scan_cxr14", "read_bbox_list", "FINDINGS",
    "IDCDataset", "scan_idc", "parse_idc_name", "idc_mosaic",
    "SegPairsDataset", "scan_seg_pairs", "instance_count",
    "MoNuSegDataset", "scan_monuseg", "read_aperio_xml", "write_aperio_xml", "xml_to_instance_mask",
]
