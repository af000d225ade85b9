#!/usr/bin/env python3
# tests/e2e/mkpe.py — writes a minimal valid PE32+ image (x86-64 console
# program, one .text section holding `xor eax,eax; ret`) to stdout, for
# Authenticode tests: osslsigncode signs and verifies it like any .exe.
# An optional argument is written into the section, so two images differ.
import struct
import sys

FILE_ALIGN, SECT_ALIGN = 0x200, 0x1000

dos = bytearray(64)
dos[0:2] = b"MZ"
struct.pack_into("<I", dos, 0x3C, len(dos))            # e_lfanew
# COFF: AMD64, 1 section, optional header of 0xF0 bytes, executable image
coff = struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 0xF0, 0x0022)
opt = struct.pack("<HBBIIIII", 0x20B, 14, 0, FILE_ALIGN, 0, 0, SECT_ALIGN, SECT_ALIGN)
opt += struct.pack("<QII", 0x140000000, SECT_ALIGN, FILE_ALIGN)
opt += struct.pack("<HHHHHHI", 6, 0, 0, 0, 6, 0, 0)
# SizeOfImage, SizeOfHeaders, CheckSum, Subsystem (console), DllCharacteristics
opt += struct.pack("<IIIHH", 2 * SECT_ALIGN, FILE_ALIGN, 0, 3, 0x8160)
opt += struct.pack("<QQQQII", 0x100000, 0x1000, 0x100000, 0x1000, 0, 16)
opt += bytes(16 * 8)                                  # data directories, all empty
sect = struct.pack("<8sIIIIIIHHI", b".text", FILE_ALIGN, SECT_ALIGN, FILE_ALIGN,
                   FILE_ALIGN, 0, 0, 0, 0, 0x60000020)  # code, execute, read
headers = dos + b"PE\0\0" + coff + opt + sect
headers += bytes(FILE_ALIGN - len(headers))
text = b"\x31\xc0\xc3" + (sys.argv[1].encode() if len(sys.argv) > 1 else b"")
if len(text) > FILE_ALIGN:
    sys.exit("mkpe.py: text too long")
sys.stdout.buffer.write(headers + text + bytes(FILE_ALIGN - len(text)))
