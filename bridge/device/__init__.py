"""One Modbus unit: datapoint reads and writes, its poll loop and availability."""
