"""EID file -> `eid.Eid`, through the official `sgr-specification` xsdata models.

No XML is read by hand: xsdata's `XmlParser` builds the `DeviceFrame`, and this
module only copies out what the mapping uses. Any failure (file, XML, schema)
becomes one `EidError` naming the file, here where it enters.
"""

from __future__ import annotations

import os
from typing import Any

from sgr_specification.v0.product import DeviceFrame
from xsdata.formats.dataclass.parsers import XmlParser
from xsdata.formats.dataclass.parsers.config import ParserConfig

from bridge.sgr.eid import Eid, EidPoint, Interface

_MODBUS_TYPES = ("boolean", "int8", "int8_u", "int16", "int16_u", "int32", "int32_u", "int64",
                 "int64_u", "float32", "float64", "date_time", "string", "enum", "bitmap")
# xsdata attribute -> the EID's element name (what users read in the file)
_XML_NAME = {"int8_u": "int8U", "int16_u": "int16U", "int32_u": "int32U",
             "int64_u": "int64U", "date_time": "dateTime"}


class EidError(Exception):
    """The file is not a readable Modbus EID."""


def read_eid(path: str | os.PathLike[str]) -> Eid:
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise EidError(f"EID file {name} not found")
    # Newer EIDs may carry elements this package version does not know: skip them
    # rather than refuse the whole file (the mapping checks what it uses).
    parser = XmlParser(config=ParserConfig(fail_on_unknown_properties=False))
    try:
        frame = parser.parse(name, DeviceFrame)
        return _eid(frame)
    except EidError:
        raise
    except Exception as exc:  # xsdata, the XML parser and OSError all end here
        raise EidError(f"{name} is not a readable SGr EID: {exc}") from None


def _eid(frame: Any) -> Eid:
    modbus = frame.interface_list.modbus_interface if frame.interface_list else None
    if modbus is None or modbus.modbus_interface_description is None:
        raise EidError("the EID has no Modbus interface (only Modbus EIDs are supported)")
    desc = modbus.modbus_interface_description
    tcp, rtu = desc.modbus_tcp, desc.modbus_rtu
    interface = Interface(
        selection=desc.modbus_interface_selection.value if desc.modbus_interface_selection
        else "", first_register_is_one=bool(desc.first_register_address_is_one),
        bit_order=desc.bit_order.value if desc.bit_order else "BigEndian",
        slave_id=tcp.slave_id if tcp else rtu.slave_addr if rtu else None,
        tcp_port=tcp.port if tcp else None, tcp_address=tcp.address if tcp else None,
        baudrate=rtu.baud_rate_selected if rtu else None,
        parity=rtu.parity_selected if rtu else None,
        stopbits=rtu.stop_bit_len_selected if rtu else None,
        bytesize=rtu.byte_len_selected if rtu else None)
    configuration = {c.name: c.default_value for c in (
        frame.configuration_list.configuration_list_element if frame.configuration_list
        else ()) if c.name}
    points = []
    profiles = modbus.functional_profile_list.functional_profile_list_element \
        if modbus.functional_profile_list else []
    for profile in profiles:
        profile_name = profile.functional_profile.functional_profile_name \
            if profile.functional_profile else ""
        for element in profile.data_point_list.data_point_list_element \
                if profile.data_point_list else []:
            points.append(_point(profile_name or "", element))
    version = None
    info = frame.device_information
    if info is not None and info.version_number is not None:
        v = info.version_number
        version = f"{v.primary_version_number}.{v.secondary_version_number}." \
                  f"{v.sub_release_version_number}"
    return Eid(device_name=frame.device_name or "", manufacturer=frame.manufacturer_name,
               interface=interface, configuration=configuration, points=tuple(points),
               version=version)


def _point(profile: str, element: Any) -> EidPoint:
    point, config = element.data_point, element.modbus_data_point_configuration
    attrs = element.modbus_attributes
    mtype: Any = config.modbus_data_type if config else None
    kind = next((k for k in _MODBUS_TYPES if mtype is not None and getattr(mtype, k) is not None),
                "")
    generic = next((k for k in _MODBUS_TYPES if point.data_type is not None
                    and getattr(point.data_type, k, None) is not None), "")
    enum_source = mtype.enum if mtype is not None and kind == "enum" else \
        point.data_type.enum if generic == "enum" else None
    bitmap_source = mtype.bitmap if mtype is not None and kind == "bitmap" else \
        point.data_type.bitmap if generic == "bitmap" else None
    boolean = mtype.boolean if mtype is not None and kind == "boolean" else None
    scaling = attrs.scaling_factor if attrs else None
    return EidPoint(
        profile=profile, name=(point.data_point_name or "").strip(),
        direction=point.data_direction.value if point.data_direction else "R",
        modbus_type=_XML_NAME.get(kind, kind), generic_type=_XML_NAME.get(generic, generic),
        register_type=config.register_type.value if config and config.register_type else None,
        address=config.address if config else None,
        registers=config.number_of_registers if config else None,
        bit_rank=config.bit_rank if config else None,
        unit=point.unit.value if point.unit else None,
        minimum=point.minimum_value, maximum=point.maximum_value,
        unit_multiplier=point.unit_conversion_multiplicator, array_length=point.array_length,
        multiplicator=scaling.multiplicator if scaling else None,
        power_of_10=scaling.powerof10 if scaling else None,
        sunssf=attrs.sunssf if attrs else None,
        layer6=attrs.layer6_deviation.value if attrs and attrs.layer6_deviation else None,
        true_value=boolean.true_value if boolean else None,
        false_value=boolean.false_value if boolean else None,
        enum=tuple((e.ordinal, e.literal or "") for e in enum_source.enum_entry)
        if enum_source else (),
        enum_mask=_mask(enum_source.hex_mask) if enum_source else None,
        bitmap=tuple((_mask(e.hex_mask) or 0, e.literal or "")
                     for e in bitmap_source.bitmap_entry) if bitmap_source else (),
        split_addresses=bool(config and config.address is None
                             and (config.read_address is not None
                                  or config.write_address is not None)))


def _mask(raw: bytes | None) -> int | None:
    return int.from_bytes(raw, "big") if raw else None
