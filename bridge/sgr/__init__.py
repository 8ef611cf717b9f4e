"""SmartGridready device descriptions (EIDs): the only importer of sgr_specification.

`parse.read_eid` turns an EID file into the plain `eid.Eid` (xsdata does the
XML); `mapping.map_eid` turns that into datapoints, pure and testable with
hand-made `Eid`s; `units` holds the SGr unit -> Home Assistant table.
"""
