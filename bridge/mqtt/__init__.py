"""MQTT side: the link (the only aiomqtt importer), the topic scheme and result bodies."""
