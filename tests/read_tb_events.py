#!/usr/bin/env python3
"""Read a TensorBoard event file with an independent decoder and print it.

The Event/Summary message classes are built at run time from descriptors
(google.protobuf's descriptor_pb2), with the field numbers and types of
tensorboard/compat/proto/event.proto and summary.proto, so nothing from
tensorboard or tensorflow is imported: Debian's python3-protobuf suffices.
The CRC32C is computed bit by bit here, independently of the C writer's
table.

Every record's two masked CRCs are checked, every Event is parsed, and its
canonical re-serialization must equal the bytes in the file. Output, one
JSON object per line:

    {"step": 0, "wall_time": ..., "file_version": "brain.Event:2"}
    {"step": 3, "wall_time": ..., "tag": "loss", "value": 0.25}

Usage: read_tb_events.py FILE. Exit status 1 (and a message on stderr) on
any framing, CRC or decoding error.
"""
import json
import struct
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def add_field(msg, name, number, ftype, label=F.LABEL_OPTIONAL, type_name=None, oneof=None):
    f = msg.field.add()
    f.name, f.number, f.type, f.label = name, number, ftype, label
    if type_name:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof


def message_classes():
    fd = descriptor_pb2.FileDescriptorProto()
    fd.name = "tau2_test_tb_event.proto"
    fd.package = "tensorboard"
    fd.syntax = "proto3"

    summary = fd.message_type.add()
    summary.name = "Summary"
    value = summary.nested_type.add()
    value.name = "Value"
    value.oneof_decl.add().name = "value"
    add_field(value, "tag", 1, F.TYPE_STRING)
    add_field(value, "simple_value", 2, F.TYPE_FLOAT, oneof=0)
    add_field(summary, "value", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".tensorboard.Summary.Value")

    event = fd.message_type.add()
    event.name = "Event"
    event.oneof_decl.add().name = "what"
    add_field(event, "wall_time", 1, F.TYPE_DOUBLE)
    add_field(event, "step", 2, F.TYPE_INT64)
    add_field(event, "file_version", 3, F.TYPE_STRING, oneof=0)
    add_field(event, "summary", 5, F.TYPE_MESSAGE, type_name=".tensorboard.Summary", oneof=0)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    desc = pool.FindMessageTypeByName("tensorboard.Event")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def fail(path, offset, what):
    sys.stderr.write("read_tb_events: %s: record at byte %d: %s\n" % (path, offset, what))
    sys.exit(1)


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: read_tb_events.py FILE\n")
        sys.exit(2)
    path = sys.argv[1]
    Event = message_classes()
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0
    while pos < len(buf):
        if len(buf) - pos < 12:
            fail(path, pos, "truncated header")
        head = buf[pos:pos + 8]
        (length,) = struct.unpack("<Q", head)
        (len_crc,) = struct.unpack("<I", buf[pos + 8:pos + 12])
        if len_crc != masked_crc32c(head):
            fail(path, pos, "length CRC mismatch")
        if len(buf) - pos - 12 < length + 4:
            fail(path, pos, "truncated data")
        data = buf[pos + 12:pos + 12 + length]
        (data_crc,) = struct.unpack("<I", buf[pos + 12 + length:pos + 16 + length])
        if data_crc != masked_crc32c(data):
            fail(path, pos, "data CRC mismatch")
        ev = Event()
        ev.ParseFromString(data)
        if ev.SerializeToString() != data:
            fail(path, pos, "not the canonical encoding of the Event it holds")
        which = ev.WhichOneof("what")
        if which == "file_version":
            print(json.dumps({"step": ev.step, "wall_time": ev.wall_time, "file_version": ev.file_version}))
        elif which == "summary":
            for v in ev.summary.value:
                if v.WhichOneof("value") != "simple_value":
                    fail(path, pos, "value '%s' has no simple_value" % v.tag)
                print(json.dumps({"step": ev.step, "wall_time": ev.wall_time, "tag": v.tag,
                                  "value": v.simple_value}))
        else:
            fail(path, pos, "event with neither file_version nor summary")
        pos += 16 + length


if __name__ == "__main__":
    main()
