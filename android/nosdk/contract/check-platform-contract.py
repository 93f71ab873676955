#!/usr/bin/env python3
"""Platform-contract check of the Android app (Python 3.11, standard library only).

Reads the app's compiled classes and proves, against the table platform-contract.tsv beside
this script, that

  * every Android framework class, method and field the bytecode references (android.*, dalvik.*,
    org.json, ...; members the app inherits from framework classes included) has a row;
  * every java.*/javax.* member the bytecode references exists in the public API of minSdk
    (API 24), or has a row with a verified SDK_INT guard;
  * every permission a row names is declared in the manifest (<uses-permission>);
  * a row's API level agrees with the API-24 platform: level <= minSdk only if the member exists
    in the android-all jar of API 24 and in the public API-24 SDK (androidscents signature);
  * every reference above minSdk (and every row with a guard) is guarded: at each call site the
    method's bytecode has established Build.VERSION.SDK_INT >= N (N >= the level) on every path
    that reaches it (a dataflow analysis over the method's control-flow graph, see guard_analysis);
  * no row is stale (every row is still referenced), the table is sorted and has no duplicates.

Exit status 0 when all holds, 1 with one line per problem otherwise, 2 on bad inputs.

  check-platform-contract.py                     # defaults: see --help
  check-platform-contract.py --self-test         # proves the check fails when it should
  check-platform-contract.py --skeleton          # prints table rows for unlisted references
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
M2 = os.path.expanduser("~/.m2/repository")

# The inputs, as Maven coordinates (all on Maven Central).
ANDROID_ALL_MIN = "org.robolectric:android-all:7.0.0_r1-robolectric-r1"  # API 24 (build.prop: sdk=24)
ANDROID_ALL_COMPILE = "org.robolectric:android-all:14-robolectric-10818077"  # API 34, what the app compiles against
# The public API of the API-24 SDK (android.jar of platforms/android-24, java.* included) as an
# Animal Sniffer signature. The android-all jars hold no libcore (java.*) classes: Robolectric runs
# on the host JDK, so this is where java.* members of API 24 come from.
API_SIGNATURE_MIN = "net.sf.androidscents.signature:android-api-level-24:7.0_r2:signature"

INF = 10**6
SDK_INT = ("android/os/Build$VERSION", "SDK_INT", "I")


def m2_path(coord: str) -> str:
    parts = coord.split(":")
    g, a, v = parts[0], parts[1], parts[2]
    ext = parts[3] if len(parts) > 3 else "jar"
    return os.path.join(M2, *g.split("."), a, v, f"{a}-{v}.{ext}")


def ensure_artifact(coord: str, fetch: bool) -> str:
    path = m2_path(coord)
    if os.path.exists(path):
        return path
    if not fetch:
        raise InputError(f"{path} is missing: mvn -B -q dependency:get -Dartifact={coord}")
    print(f"fetching {coord} (mvn dependency:get)", file=sys.stderr)
    if not shutil.which("mvn"):
        raise InputError(f"{path} is missing and mvn is not installed to fetch {coord}")
    subprocess.run(["mvn", "-B", "-q", "dependency:get", f"-Dartifact={coord}"], check=False,
                   stdout=sys.stderr)
    if not os.path.exists(path):
        raise InputError(f"could not fetch {coord} into {path}")
    return path


class InputError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Class files
# --------------------------------------------------------------------------------------------

ACC_PUBLIC, ACC_PRIVATE, ACC_PROTECTED, ACC_STATIC = 0x1, 0x2, 0x4, 0x8
ACC_INTERFACE, ACC_ABSTRACT, ACC_SYNTHETIC = 0x200, 0x400, 0x1000


def mutf8(b: bytes) -> str:
    return b.replace(b"\xc0\x80", b"\x00").decode("utf-8", errors="surrogatepass")


@dataclass
class Method:
    access: int
    name: str
    desc: str
    code: bytes | None = None
    max_locals: int = 0
    handlers: list = field(default_factory=list)  # (start, end, handler, catch type or None)
    lines: list = field(default_factory=list)  # (start_pc, line)
    annotations: list = field(default_factory=list)  # (type descriptor, {element: value})

    def line_at(self, pc: int) -> int | None:
        best = None
        for start, line in self.lines:
            if start <= pc and (best is None or start >= best[0]):
                best = (start, line)
        return best[1] if best else None


@dataclass
class ClassFile:
    name: str
    super: str | None
    interfaces: list
    access: int
    fields: dict  # (name, desc) -> access
    methods: dict  # (name, desc) -> Method
    cp: list = field(default_factory=list)
    bootstrap: list = field(default_factory=list)  # (method handle cp index, [arg cp indexes])
    source: str | None = None
    annotations: list = field(default_factory=list)

    @property
    def is_interface(self) -> bool:
        return bool(self.access & ACC_INTERFACE)


class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.d, self.p = data, pos

    def u1(self):
        v = self.d[self.p]
        self.p += 1
        return v

    def u2(self):
        v = struct.unpack_from(">H", self.d, self.p)[0]
        self.p += 2
        return v

    def u4(self):
        v = struct.unpack_from(">I", self.d, self.p)[0]
        self.p += 4
        return v

    def take(self, n):
        v = self.d[self.p : self.p + n]
        self.p += n
        return v


def parse_class(data: bytes, full: bool = True) -> ClassFile:
    r = Reader(data)
    if r.u4() != 0xCAFEBABE:
        raise ValueError("not a class file")
    r.u2(), r.u2()
    n = r.u2()
    cp: list = [None] * n
    i = 1
    while i < n:
        tag = r.u1()
        if tag == 1:
            cp[i] = ("Utf8", mutf8(r.take(r.u2())))
        elif tag == 3:
            cp[i] = ("Integer", struct.unpack(">i", r.take(4))[0])
        elif tag == 4:
            cp[i] = ("Float", r.take(4))
        elif tag in (5, 6):
            cp[i] = ("Long" if tag == 5 else "Double", r.take(8))
            i += 1
        elif tag == 7:
            cp[i] = ("Class", r.u2())
        elif tag == 8:
            cp[i] = ("String", r.u2())
        elif tag in (9, 10, 11):
            cp[i] = ({9: "Fieldref", 10: "Methodref", 11: "InterfaceMethodref"}[tag], r.u2(), r.u2())
        elif tag == 12:
            cp[i] = ("NameAndType", r.u2(), r.u2())
        elif tag == 15:
            cp[i] = ("MethodHandle", r.u1(), r.u2())
        elif tag == 16:
            cp[i] = ("MethodType", r.u2())
        elif tag in (17, 18):
            cp[i] = ("Dynamic" if tag == 17 else "InvokeDynamic", r.u2(), r.u2())
        elif tag in (19, 20):
            cp[i] = ("Module" if tag == 19 else "Package", r.u2())
        else:
            raise ValueError(f"bad constant pool tag {tag}")
        i += 1

    def utf(k):
        return cp[k][1]

    def cls(k):
        return utf(cp[k][1]) if k else None

    access = r.u2()
    this = cls(r.u2())
    sup = cls(r.u2())
    interfaces = [cls(r.u2()) for _ in range(r.u2())]
    cf = ClassFile(this, sup, interfaces, access, {}, {}, cp if full else [])

    def annotations(rr: Reader):
        out = []
        for _ in range(rr.u2()):
            out.append(annotation(rr))
        return out

    def annotation(rr: Reader):
        t = utf(rr.u2())
        vals = {}
        for _ in range(rr.u2()):
            k = utf(rr.u2())
            vals[k] = element(rr)
        return (t, vals)

    def element(rr: Reader):
        tag = chr(rr.u1())
        if tag in "BCIJSZ":
            return cp[rr.u2()][1]
        if tag in "DFs":
            k = rr.u2()
            return cp[k][1]
        if tag == "e":
            rr.u2()
            return utf(rr.u2())
        if tag == "c":
            return utf(rr.u2())
        if tag == "@":
            return annotation(rr)
        if tag == "[":
            return [element(rr) for _ in range(rr.u2())]
        raise ValueError(f"bad annotation element tag {tag}")

    for _ in range(r.u2()):
        acc, name, desc = r.u2(), utf(r.u2()), utf(r.u2())
        for _ in range(r.u2()):
            r.u2()
            r.take(r.u4())
        cf.fields[(name, desc)] = acc
    for _ in range(r.u2()):
        acc, name, desc = r.u2(), utf(r.u2()), utf(r.u2())
        m = Method(acc, name, desc)
        for _ in range(r.u2()):
            aname, alen = utf(r.u2()), r.u4()
            body = r.take(alen)
            if not full:
                continue
            if aname == "Code":
                cr = Reader(body)
                cr.u2()
                m.max_locals = cr.u2()
                m.code = cr.take(cr.u4())
                for _ in range(cr.u2()):
                    s, e, h, c = cr.u2(), cr.u2(), cr.u2(), cr.u2()
                    m.handlers.append((s, e, h, cls(c) if c else None))
                for _ in range(cr.u2()):
                    an, al = utf(cr.u2()), cr.u4()
                    ab = cr.take(al)
                    if an == "LineNumberTable":
                        lr = Reader(ab)
                        for _ in range(lr.u2()):
                            m.lines.append((lr.u2(), lr.u2()))
            elif aname in ("RuntimeVisibleAnnotations", "RuntimeInvisibleAnnotations"):
                m.annotations += annotations(Reader(body))
        cf.methods[(name, desc)] = m
    for _ in range(r.u2()):
        aname, alen = utf(r.u2()), r.u4()
        body = r.take(alen)
        if not full:
            continue
        if aname == "BootstrapMethods":
            br = Reader(body)
            for _ in range(br.u2()):
                mh = br.u2()
                cf.bootstrap.append((mh, [br.u2() for _ in range(br.u2())]))
        elif aname == "SourceFile":
            cf.source = utf(Reader(body).u2())
        elif aname in ("RuntimeVisibleAnnotations", "RuntimeInvisibleAnnotations"):
            cf.annotations += annotations(Reader(body))
    return cf


def cp_member(cf: ClassFile, k: int):
    """(kind, owner, name, desc) of a Fieldref/Methodref/InterfaceMethodref."""
    e = cf.cp[k]
    owner = cf.cp[cf.cp[e[1]][1]][1]
    nat = cf.cp[e[2]]
    return e[0], owner, cf.cp[nat[1]][1], cf.cp[nat[2]][1]


def cp_class(cf: ClassFile, k: int) -> str:
    return cf.cp[cf.cp[k][1]][1]


# --------------------------------------------------------------------------------------------
# Class providers: the app, the android-all jars, the API-24 signature
# --------------------------------------------------------------------------------------------


@dataclass
class Shape:
    """What hierarchy resolution needs of a class."""

    name: str
    super: str | None
    interfaces: list
    is_interface: bool
    methods: set  # (name, desc)
    fields: set  # (name, desc)


class JarProvider:
    def __init__(self, path: str, label: str):
        self.label = label
        self.path = path
        self.zip = zipfile.ZipFile(path)
        self.names = set(self.zip.namelist())
        self.cache: dict = {}

    def get(self, name: str) -> Shape | None:
        if name in self.cache:
            return self.cache[name]
        entry = name + ".class"
        shape = None
        if entry in self.names:
            cf = parse_class(self.zip.read(entry), full=False)
            shape = Shape(cf.name, cf.super, cf.interfaces, cf.is_interface, set(cf.methods), set(cf.fields))
        self.cache[name] = shape
        return shape


class DirProvider:
    """The app's classes: a directory tree of .class files or a jar."""

    def __init__(self, paths: list):
        self.classes: dict = {}
        for p in paths:
            if os.path.isdir(p):
                for root, _, files in os.walk(p):
                    for f in files:
                        if f.endswith(".class"):
                            with open(os.path.join(root, f), "rb") as fh:
                                self._add(fh.read())
            elif zipfile.is_zipfile(p):
                with zipfile.ZipFile(p) as z:
                    for n in z.namelist():
                        if n.endswith(".class") and not n.startswith("META-INF/"):
                            self._add(z.read(n))
            else:
                raise InputError(f"{p}: neither a directory of classes nor a jar")
        if not self.classes:
            raise InputError(f"no class files in {', '.join(paths)}")

    def _add(self, data: bytes):
        cf = parse_class(data)
        self.classes[cf.name] = cf

    def get(self, name: str) -> Shape | None:
        cf = self.classes.get(name)
        if cf is None:
            return None
        return Shape(cf.name, cf.super, cf.interfaces, cf.is_interface, set(cf.methods), set(cf.fields))


class SignatureProvider:
    """An Animal Sniffer signature (gzip'd Java serialization of Clazz objects)."""

    def __init__(self, path: str, label: str):
        self.label = label
        self.classes: dict = {}
        for obj in JavaDeserializer(gzip.open(path).read()).objects():
            if not isinstance(obj, dict) or not obj["class"].endswith(".Clazz"):
                continue
            f = obj["fields"]
            methods, fields = set(), set()
            sigs = f["signatures"]["annotations"] if f["signatures"] else []
            for s in sigs:
                if "#" in s:
                    n, d = s.split("#", 1)
                    fields.add((n, d))
                else:
                    i = s.index("(")
                    methods.add((s[:i], s[i:]))
            self.classes[f["name"]] = Shape(
                f["name"], f["superClass"], list(f["superInterfaces"] or []), False, methods, fields
            )
        if not self.classes:
            raise InputError(f"{path}: no classes in the signature")

    def get(self, name: str) -> Shape | None:
        return self.classes.get(name)


class JavaDeserializer:
    """Just enough of the Java serialization stream format (JLS object serialization spec,
    chapter 6) for Animal Sniffer signatures: objects, class descriptors, strings, arrays,
    back references, block data (HashSet.writeObject)."""

    def __init__(self, data: bytes):
        self.r = Reader(data)
        self.handles: list = []
        if self.r.u2() != 0xACED or self.r.u2() != 5:
            raise InputError("not a Java serialization stream")

    def objects(self):
        while self.r.p < len(self.r.d):
            yield self.content()

    def newhandle(self, obj):
        self.handles.append(obj)
        return len(self.handles) - 1

    def content(self):
        tc = self.r.u1()
        if tc == 0x70:  # TC_NULL
            return None
        if tc == 0x71:  # TC_REFERENCE
            return self.handles[self.r.u4() - 0x7E0000]
        if tc == 0x74:  # TC_STRING
            s = mutf8(self.r.take(self.r.u2()))
            self.newhandle(s)
            return s
        if tc == 0x7C:  # TC_LONGSTRING
            n = struct.unpack(">q", self.r.take(8))[0]
            s = mutf8(self.r.take(n))
            self.newhandle(s)
            return s
        if tc == 0x72:  # TC_CLASSDESC
            return self.classdesc_body()
        if tc == 0x73:  # TC_OBJECT
            desc = self.content()
            obj = {"class": desc["name"], "fields": {}, "annotations": []}
            self.newhandle(obj)
            chain = []
            d = desc
            while d:
                chain.append(d)
                d = d["super"]
            for d in reversed(chain):
                if d["flags"] & 0x02:  # SC_SERIALIZABLE
                    for tcode, fname in d["fields"]:
                        obj["fields"][fname] = self.value(tcode)
                    if d["flags"] & 0x01:  # SC_WRITE_METHOD
                        obj["annotations"] += self.annotation()
                else:
                    raise InputError(f"unsupported serialized class {d['name']}")
            return obj
        if tc == 0x75:  # TC_ARRAY
            desc = self.content()
            arr: list = []
            self.newhandle(arr)
            n = self.r.u4()
            comp = desc["name"][1]
            for _ in range(n):
                arr.append(self.value(comp))
            return arr
        if tc == 0x77:  # TC_BLOCKDATA
            return ("block", self.r.take(self.r.u1()))
        if tc == 0x7A:  # TC_BLOCKDATALONG
            return ("block", self.r.take(self.r.u4()))
        if tc == 0x79:  # TC_RESET
            self.handles.clear()
            return self.content()
        raise InputError(f"unsupported serialization tag 0x{tc:02x} at {self.r.p - 1}")

    def classdesc_body(self):
        name = self.r.take(self.r.u2()).decode()
        self.r.take(8)
        desc = {"name": name, "flags": 0, "fields": [], "super": None}
        self.newhandle(desc)
        desc["flags"] = self.r.u1()
        for _ in range(self.r.u2()):
            tcode = chr(self.r.u1())
            fname = self.r.take(self.r.u2()).decode()
            if tcode in "[L":
                self.content()  # the field's type name
            desc["fields"].append((tcode, fname))
        self.annotation()
        desc["super"] = self.content()
        return desc

    def annotation(self):
        out = []
        while True:
            if self.r.d[self.r.p] == 0x78:  # TC_ENDBLOCKDATA
                self.r.p += 1
                return [o for o in out if not (isinstance(o, tuple) and o[0] == "block")]
            out.append(self.content())

    def value(self, tcode):
        fmt = {"B": ">b", "C": ">H", "D": ">d", "F": ">f", "I": ">i", "J": ">q", "S": ">h", "Z": ">?"}
        if tcode in fmt:
            f = fmt[tcode]
            return struct.unpack(f, self.r.take(struct.calcsize(f)))[0]
        return self.content()


# --------------------------------------------------------------------------------------------
# Hierarchy resolution (JVMS 5.4.3.2 fields, 5.4.3.3/5.4.3.4 methods)
# --------------------------------------------------------------------------------------------


def resolve(provider, owner: str, name: str, desc: str, kind: str) -> str | None:
    """The class declaring the member as seen from `owner`, walking supers and superinterfaces;
    None when no class on the way has it (or a class on the way is missing)."""
    seen: set = set()
    want = (name, desc)

    def walk(c: str | None, depth=0) -> str | None:
        if c is None or c in seen or depth > 64:
            return None
        seen.add(c)
        s = provider.get(c)
        if s is None:
            return None
        if want in (s.fields if kind == "field" else s.methods):
            return c
        order = [s.super] + list(s.interfaces) if kind == "method" else list(s.interfaces) + [s.super]
        for nxt in order:
            hit = walk(nxt, depth + 1)
            if hit:
                return hit
        return None

    hit = walk(owner)
    if hit is None and kind == "method" and "java/lang/Object" not in seen:
        hit = walk("java/lang/Object")  # interface methods resolve Object's too
    return hit


def class_exists(provider, name: str) -> bool:
    return provider.get(name) is not None


def in_api(provider, kind: str, owner: str, member: str) -> bool:
    """Whether `provider` (a jar or an SDK signature) has the class, or resolves the member
    through the class hierarchy (inherited members count)."""
    if not class_exists(provider, owner):
        return False
    if kind == "class":
        return True
    name, desc = split_member(kind, member)
    return resolve(provider, owner, name, desc, kind) is not None


# --------------------------------------------------------------------------------------------
# Bytecode: decoding and the SDK_INT guard analysis
# --------------------------------------------------------------------------------------------


def slots(desc: str):
    """Slot sizes of a method descriptor: ([argument sizes], return size)."""
    args, i = [], 1
    while desc[i] != ")":
        c = desc[i]
        if c in "JD":
            args.append(2)
            i += 1
        elif c == "L":
            args.append(1)
            i = desc.index(";", i) + 1
        elif c == "[":
            while desc[i] == "[":
                i += 1
            i = desc.index(";", i) + 1 if desc[i] == "L" else i + 1
            args.append(1)
        else:
            args.append(1)
            i += 1
    ret = desc[i + 1]
    return args, 0 if ret == "V" else 2 if ret in "JD" else 1


def field_size(desc: str) -> int:
    return 2 if desc[0] in "JD" else 1


def s1(b):
    return b - 256 if b > 127 else b


def decode(code: bytes):
    """[(pc, opcode, operands dict, length)] of a method's bytecode."""
    out, pc, n = [], 0, len(code)
    while pc < n:
        op = code[pc]
        ins = {"pc": pc, "op": op}
        if op == 0xC4:  # wide
            op2 = code[pc + 1]
            ins["op"] = op2
            ins["idx"] = struct.unpack_from(">H", code, pc + 2)[0]
            if op2 == 0x84:
                ins["inc"] = struct.unpack_from(">h", code, pc + 4)[0]
                ln = 6
            else:
                ln = 4
        elif op == 0xAA:  # tableswitch
            p = (pc + 4) & ~3
            default, low, high = struct.unpack_from(">iii", code, p)
            offs = struct.unpack_from(f">{high - low + 1}i", code, p + 12)
            ins["default"] = pc + default
            ins["cases"] = [(low + k, pc + o) for k, o in enumerate(offs)]
            ln = p + 12 + 4 * (high - low + 1) - pc
        elif op == 0xAB:  # lookupswitch
            p = (pc + 4) & ~3
            default, npairs = struct.unpack_from(">ii", code, p)
            pairs = struct.unpack_from(f">{2 * npairs}i", code, p + 8)
            ins["default"] = pc + default
            ins["cases"] = [(pairs[2 * k], pc + pairs[2 * k + 1]) for k in range(npairs)]
            ln = p + 8 + 8 * npairs - pc
        else:
            ln = OPLEN.get(op)
            if ln is None:
                raise ValueError(f"unknown opcode 0x{op:02x} at {pc}")
            if op in (0x10,):
                ins["val"] = s1(code[pc + 1])
            elif op == 0x11:
                ins["val"] = struct.unpack_from(">h", code, pc + 1)[0]
            elif op == 0x12:
                ins["idx"] = code[pc + 1]
            elif op in LOCAL_OPS and ln == 2:
                ins["idx"] = code[pc + 1]
            elif op == 0x84:
                ins["idx"], ins["inc"] = code[pc + 1], s1(code[pc + 2])
            elif op in (0x13, 0x14) or 0xB2 <= op <= 0xB9 or op in (0xBA, 0xBB, 0xBD, 0xC0, 0xC1, 0xC5):
                ins["idx"] = struct.unpack_from(">H", code, pc + 1)[0]
                if op == 0xC5:
                    ins["dims"] = code[pc + 3]
            elif 0x99 <= op <= 0xA8 or op in (0xC6, 0xC7):
                ins["target"] = pc + struct.unpack_from(">h", code, pc + 1)[0]
            elif op in (0xC8, 0xC9):
                ins["target"] = pc + struct.unpack_from(">i", code, pc + 1)[0]
        ins["len"] = ln
        out.append(ins)
        pc += ln
    return out


OPLEN = {op: 1 for op in range(0x00, 0xCA)}
OPLEN.update({0x10: 2, 0x11: 3, 0x12: 2, 0x13: 3, 0x14: 3, 0xBC: 2, 0x84: 3, 0xA9: 2})
LOCAL_OPS = set(range(0x15, 0x1A)) | set(range(0x36, 0x3B)) | {0xA9}
for _op in LOCAL_OPS:
    OPLEN[_op] = 2
for _op in list(range(0x99, 0xA9)) + [0xC6, 0xC7] + list(range(0xB2, 0xB9)) + [0xBB, 0xBD, 0xC0, 0xC1]:
    OPLEN[_op] = 3
OPLEN.update({0xB9: 5, 0xBA: 5, 0xC5: 4, 0xC8: 5, 0xC9: 5})
del OPLEN[0xAA], OPLEN[0xAB], OPLEN[0xC4]
for _op in range(0xCA, 0x100):
    OPLEN.pop(_op, None)

# Simple stack effects (pops, pushes) in slots; result values unknown.
SIMPLE = {0x00: (0, 0), 0x01: (0, 1), 0x09: (0, 2), 0x0A: (0, 2), 0x0B: (0, 1), 0x0C: (0, 1),
          0x0D: (0, 1), 0x0E: (0, 2), 0x0F: (0, 2),
          0x2E: (2, 1), 0x2F: (2, 2), 0x30: (2, 1), 0x31: (2, 2), 0x32: (2, 1), 0x33: (2, 1),
          0x34: (2, 1), 0x35: (2, 1),
          0x4F: (3, 0), 0x50: (4, 0), 0x51: (3, 0), 0x52: (4, 0), 0x53: (3, 0), 0x54: (3, 0),
          0x55: (3, 0), 0x56: (3, 0),
          0x74: (1, 1), 0x75: (2, 2), 0x76: (1, 1), 0x77: (2, 2),
          0x78: (2, 1), 0x79: (3, 2), 0x7A: (2, 1), 0x7B: (3, 2), 0x7C: (2, 1), 0x7D: (3, 2),
          0x7E: (2, 1), 0x7F: (4, 2), 0x80: (2, 1), 0x81: (4, 2), 0x83: (4, 2),
          0x85: (1, 2), 0x86: (1, 1), 0x87: (1, 2), 0x88: (2, 1), 0x89: (2, 1), 0x8A: (2, 2),
          0x8B: (1, 1), 0x8C: (1, 2), 0x8D: (1, 2), 0x8E: (2, 1), 0x8F: (2, 2), 0x90: (2, 1),
          0x91: (1, 1), 0x92: (1, 1), 0x93: (1, 1),
          0x94: (4, 1), 0x95: (2, 1), 0x96: (2, 1), 0x97: (4, 1), 0x98: (4, 1),
          0xBB: (0, 1), 0xBC: (1, 1), 0xBD: (1, 1), 0xBE: (1, 1), 0xC0: (1, 1), 0xC1: (1, 1),
          0xC2: (1, 0), 0xC3: (1, 0)}
for _op in range(0x60, 0x74):  # add sub mul div rem: i l f d
    SIMPLE[_op] = [(2, 1), (4, 2), (2, 1), (4, 2)][(_op - 0x60) % 4]

# The abstract values the analysis tracks, one per stack or local slot:
#   None             anything
#   ("sdk",)         the value of Build.VERSION.SDK_INT
#   ("c", n)         the int constant n
#   ("cond", t, f)   a boolean: when non-zero, SDK_INT >= t holds; when zero, SDK_INT >= f holds
# A state is (lb, stack tuple, locals tuple): lb is what is known on every path to here,
# SDK_INT >= lb (minSdk at a method's entry, unless calls into it prove more).


def merge_value(a, b, lba, lbb):
    if a == b:
        return a

    def as_cond(v, lb):
        if v is not None and v[0] == "cond":
            return v
        if v == ("c", 0):
            return ("cond", INF, lb)  # never non-zero on this path
        if v == ("c", 1):
            return ("cond", lb, INF)
        return None

    ca, cb = as_cond(a, lba), as_cond(b, lbb)
    if ca is None or cb is None:
        return None
    return ("cond", min(ca[1], cb[1]), min(ca[2], cb[2]))


def merge_state(s1_, s2_):
    if s1_ is None:
        return s2_
    lb1, st1, lo1 = s1_
    lb2, st2, lo2 = s2_
    if len(st1) != len(st2):
        raise ValueError("stack heights differ at a merge point")
    st = tuple(merge_value(x, y, lb1, lb2) for x, y in zip(st1, st2))
    lo = tuple(merge_value(x, y, lb1, lb2) for x, y in zip(lo1, lo2))
    return (min(lb1, lb2), st, lo)


def refine(lb, bound):
    return max(lb, bound) if bound is not None else lb


def compare_bounds(op, a, b):
    """(bound when the branch is taken, bound when it falls through) for if_icmp<op> a, b."""
    if a == ("sdk",) and b is not None and b[0] == "c":
        n, swap = b[1], False
    elif b == ("sdk",) and a is not None and a[0] == "c":
        n, swap = a[1], True
    else:
        return None, None
    if swap:  # n OP sdk  <=>  sdk OP' n
        op = {"lt": "gt", "gt": "lt", "le": "ge", "ge": "le"}.get(op, op)
    return {
        "eq": (n, None),  # sdk == n: taken means SDK_INT is n
        "ne": (None, n),
        "ge": (n, None),
        "gt": (n + 1, None),
        "lt": (None, n),
        "le": (None, n + 1),
    }[op]


CMP = {0x9F: "eq", 0xA0: "ne", 0xA1: "lt", 0xA2: "ge", 0xA3: "gt", 0xA4: "le"}


class AnalysisError(Exception):
    pass


def guard_analysis(cf: ClassFile, m: Method, entry_lb: int):
    """For every instruction of `m`, the greatest N such that SDK_INT >= N holds on every path
    from the method's entry (where SDK_INT >= entry_lb) to it; INF for unreachable code.

    A forward dataflow analysis to a fixpoint over the control-flow graph (branches, switches,
    exception handlers), simulating the operand stack and locals abstractly so that a comparison
    of SDK_INT with a constant refines the bound on the branch it implies, also when the value
    went through a local or was first turned into a boolean (x = SDK_INT >= 26; if (x) ...).
    Returns ({pc: lb}, [instructions])."""
    insns = decode(m.code)
    at = {ins["pc"]: k for k, ins in enumerate(insns)}
    args, _ = slots(m.desc)
    nlocals = max(m.max_locals, (0 if m.access & ACC_STATIC else 1) + sum(args))
    init = (entry_lb, (), tuple([None] * nlocals))
    state: dict = {0: init}
    work = [0]
    handlers = [(s, e, h) for s, e, h, _ in m.handlers]

    def flow(pc, st):
        if pc not in at:
            raise AnalysisError(f"branch into the middle of an instruction at {pc}")
        old = state.get(pc)
        new = merge_state(old, st)
        if new != old:
            state[pc] = new
            work.append(pc)

    steps = 0
    while work:
        steps += 1
        if steps > 200000:
            raise AnalysisError("no fixpoint")
        pc = work.pop()
        ins = insns[at[pc]]
        lb, stack, loc = state[pc]
        stack, loc = list(stack), list(loc)
        for s, e, h in handlers:
            if s <= pc < e:
                flow(h, (lb, (None,), tuple(loc)))
        op = ins["op"]
        nxt = pc + ins["len"]

        def pop(n=1):
            if len(stack) < n:
                raise AnalysisError(f"operand stack underflow at {pc}")
            vals = stack[len(stack) - n :]
            del stack[len(stack) - n :]
            return vals

        def push(*vals):
            stack.extend(vals)

        succ = []  # (pc, lb bound or None)
        fall = True
        if op in SIMPLE:
            p, q = SIMPLE[op]
            pop(p)
            push(*([None] * q))
        elif 0x02 <= op <= 0x08:
            push(("c", op - 0x03))
        elif op in (0x10, 0x11):
            push(("c", ins["val"]))
        elif op in (0x12, 0x13):
            c = cf.cp[ins["idx"]]
            push(("c", c[1]) if c[0] == "Integer" else None)
        elif op == 0x14:
            push(None, None)
        elif 0x15 <= op <= 0x2D:
            if op <= 0x19:
                idx, kind = ins["idx"], op - 0x15
            else:
                idx, kind = (op - 0x1A) % 4, (op - 0x1A) // 4
            if kind in (1, 3):
                push(None, None)
            else:
                push(loc[idx] if idx < len(loc) else None)
        elif 0x36 <= op <= 0x4E:
            if op <= 0x3A:
                idx, kind = ins["idx"], op - 0x36
            else:
                idx, kind = (op - 0x3B) % 4, (op - 0x3B) // 4
            if kind in (1, 3):
                pop(2)
                loc[idx] = None
                loc[idx + 1] = None
            else:
                loc[idx] = pop()[0]
        elif op == 0x57:
            pop()
        elif op == 0x58:
            pop(2)
        elif op == 0x59:
            a = pop()
            push(*a, *a)
        elif op == 0x5A:
            b, a = pop(2)
            push(a, b, a)
        elif op == 0x5B:
            c_, b, a = pop(3)
            push(a, c_, b, a)
        elif op == 0x5C:
            b, a = pop(2)
            push(b, a, b, a)
        elif op == 0x5D:
            c_, b, a = pop(3)
            push(b, a, c_, b, a)
        elif op == 0x5E:
            d, c_, b, a = pop(4)
            push(b, a, d, c_, b, a)
        elif op == 0x5F:
            b, a = pop(2)
            push(a, b)
        elif op == 0x82:  # ixor: `!cond` as cond xor 1
            a, b = pop(2)
            if a is not None and a[0] == "cond" and b == ("c", 1):
                push(("cond", a[2], a[1]))
            elif b is not None and b[0] == "cond" and a == ("c", 1):
                push(("cond", b[2], b[1]))
            else:
                push(None)
        elif op == 0x84:
            v = loc[ins["idx"]]
            loc[ins["idx"]] = ("c", v[1] + ins["inc"]) if v is not None and v[0] == "c" else None
        elif 0x99 <= op <= 0x9E:  # if<cond> against zero
            (v,) = pop()
            t_b = f_b = None
            if v is not None and v[0] == "cond":
                if op == 0x99:  # ifeq: taken when false
                    t_b, f_b = v[2], v[1]
                elif op == 0x9A:  # ifne
                    t_b, f_b = v[1], v[2]
            elif v is not None and v[0] == "c":
                taken = {0x99: v[1] == 0, 0x9A: v[1] != 0, 0x9B: v[1] < 0, 0x9C: v[1] >= 0,
                         0x9D: v[1] > 0, 0x9E: v[1] <= 0}[op]
                t_b, f_b = (None, INF) if taken else (INF, None)
            succ.append((ins["target"], t_b))
            succ.append((nxt, f_b))
            fall = False
        elif 0x9F <= op <= 0xA4:
            a, b = pop(2)
            t_b, f_b = compare_bounds(CMP[op], a, b)
            succ.append((ins["target"], t_b))
            succ.append((nxt, f_b))
            fall = False
        elif op in (0xA5, 0xA6):
            pop(2)
            succ += [(ins["target"], None), (nxt, None)]
            fall = False
        elif op in (0xC6, 0xC7):
            pop()
            succ += [(ins["target"], None), (nxt, None)]
            fall = False
        elif op in (0xA7, 0xC8):
            succ.append((ins["target"], None))
            fall = False
        elif op in (0xA8, 0xA9, 0xC9):
            raise AnalysisError("jsr/ret (pre-Java-7 bytecode) is not supported")
        elif op in (0xAA, 0xAB):
            (v,) = pop()
            sdk = v == ("sdk",)
            for key, tgt in ins["cases"]:
                succ.append((tgt, key if sdk else None))
            succ.append((ins["default"], None))
            fall = False
        elif 0xAC <= op <= 0xB1 or op == 0xBF:
            fall = False
        elif 0xB2 <= op <= 0xB5:
            _, owner, name, desc = cp_member(cf, ins["idx"])
            size = field_size(desc)
            if op == 0xB2:
                push(("sdk",) if (owner, name, desc) == SDK_INT else None, *([None] * (size - 1)))
            elif op == 0xB3:
                pop(size)
            elif op == 0xB4:
                pop(1)
                push(*([None] * size))
            else:
                pop(size + 1)
        elif 0xB6 <= op <= 0xB9:
            _, owner, name, desc = cp_member(cf, ins["idx"])
            a, r = slots(desc)
            pop(sum(a) + (0 if op == 0xB8 else 1))
            push(*([None] * r))
        elif op == 0xBA:
            nat = cf.cp[cf.cp[ins["idx"]][2]]
            a, r = slots(cf.cp[nat[2]][1])
            pop(sum(a))
            push(*([None] * r))
        elif op == 0xC5:
            pop(ins["dims"])
            push(None)
        else:
            raise AnalysisError(f"unhandled opcode 0x{op:02x} at {pc}")
        out = (lb, tuple(stack), tuple(loc))
        for s, e, h in handlers:
            if s <= pc < e:
                flow(h, (lb, (None,), tuple(loc)))
        if fall:
            if nxt in at:
                flow(nxt, out)
        else:
            for tgt, bound in succ:
                if bound == INF:
                    continue  # the branch cannot be taken
                flow(tgt, (refine(lb, bound), out[1], out[2]))
    return {pc: state[pc][0] if pc in state else INF for pc in at}, insns


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------


@dataclass
class Site:
    cls: str
    method: str  # name + descriptor, or "" for the class declaration
    pc: int | None  # None: not an instruction (declaration, superclass, descriptor)
    line: int | None
    source: str | None
    lb: int = 0
    via: str = ""  # how the reference arises when not plain (e.g. "inherited by net/clat/X")

    def where(self) -> str:
        src = f" ({self.source}:{self.line})" if self.source and self.line else ""
        if self.pc is None:
            return f"{dotted(self.cls)}{'.' + self.method.split('(')[0] if self.method else ''}{src} [declaration]"
        return f"{dotted(self.cls)}.{self.method.split('(')[0]}{src} @{self.pc}"


@dataclass
class Ref:
    kind: str  # class | method | field
    owner: str  # internal name
    member: str  # name + descriptor, "-" for classes
    sites: list = field(default_factory=list)
    code: bool = False  # referenced by an instruction (not only by a signature)
    app_api: int | None = None  # for calls of app methods marked @RequiresApi

    @property
    def key(self):
        return (self.kind, self.owner, self.member)


def dotted(internal: str) -> str:
    return internal.replace("/", ".")


def member_id(kind: str, name: str, desc: str) -> str:
    """How the table spells a member: name(args)ret for methods, name:type for fields."""
    return f"{name}:{desc}" if kind == "field" else name + desc


def split_member(kind: str, member: str):
    if kind == "field":
        return tuple(member.split(":", 1))
    i = member.index("(")
    return member[:i], member[i:]


def desc_classes(desc: str):
    for mm in re.finditer(r"L([^;]+);", desc):
        yield mm.group(1)


def elem_class(name: str) -> str | None:
    """Element class of an array class name ("[Landroid/net/Network;"), None for primitives."""
    if not name.startswith("["):
        return name
    n = name.lstrip("[")
    return n[1:-1] if n.startswith("L") else None


REQUIRES_API = re.compile(r"(^|[/$])(RequiresApi|TargetApi)$")


def requires_api(annotations) -> int | None:
    for t, vals in annotations:
        name = t[1:-1] if t.startswith("L") else t
        if REQUIRES_API.search(name):
            for k in ("value", "api"):
                if isinstance(vals.get(k), int):
                    return vals[k]
    return None


class Scope:
    def __init__(self, app: DirProvider, compile_jar: JarProvider, bundled: list, java_api=None):
        # java_api: where java.* classes are looked up for hierarchy walks (the android-all jars
        # hold almost none): the minSdk SDK signature.
        self.app, self.compile, self.bundled, self.java_api = app, compile_jar, bundled, java_api

    def first_outside(self, name: str) -> str:
        c = name
        while c and self.kind(c) == "app":
            c = self.app.classes[c].super
        return c or "java/lang/Object"

    def reaches_bundled(self, name: str) -> bool:
        todo, seen = [name], set()
        while todo:
            c = todo.pop()
            if c is None or c in seen:
                continue
            seen.add(c)
            if self.kind(c) == "bundled":
                return True
            cf = self.app.classes.get(c)
            if cf:
                todo += [cf.super] + cf.interfaces
        return False

    def kind(self, name: str) -> str:
        if name in self.app.classes:
            return "app"
        if any(name.startswith(p) for p in self.bundled):
            return "bundled"
        if name.startswith(("java/", "javax/")):
            return "java"
        return "framework"


def collect(app: DirProvider, scope: Scope, min_sdk: int):
    """All references of the app's bytecode to classes and members outside it: {key: Ref},
    plus the facts the guard analysis needs, and problems found on the way."""
    refs: dict = {}
    problems: list = []
    notes: list = []

    def add(kind, owner, member, site, code, app_api=None):
        k = (kind, owner, member)
        r = refs.get(k)
        if r is None:
            r = refs[k] = Ref(kind, owner, member, app_api=app_api)
        r.sites.append(site)
        r.code = r.code or code

    def add_class(name, site, code):
        name = elem_class(name)
        if name is None:
            return
        if scope.kind(name) in ("framework", "java"):
            add("class", name, "-", site, code)

    def add_member(kind, owner, name, desc, site):
        """A field or method reference as written (owner may be an app class inheriting it)."""
        owner = elem_class(owner) or "java/lang/Object"  # array clone(): Object's
        for c in desc_classes(desc):
            add_class(c, Site(site.cls, site.method, site.pc, site.line, site.source, via="descriptor"), False)
        k = scope.kind(owner)
        if k == "bundled":
            return
        if k in ("framework", "java"):
            add_class(owner, site, True)
            add(kind, owner, member_id(kind, name, desc), site, True)
            return
        # An app class: the member is the app's own, or inherited from the framework.
        decl = resolve(CombinedProvider(scope), owner, name, desc, kind)
        if decl is None and scope.reaches_bundled(owner):
            return  # inherited from a bundled library class (kotlin.*): not the platform's
        if decl is None and scope.kind(scope.first_outside(owner)) == "java":
            decl = scope.first_outside(owner)  # java.* the compile jar lacks: checked against the SDK
        if decl is None:
            problems.append(f"unresolvable reference {dotted(owner)}.{name}{desc} at {site.where()}")
            return
        if scope.kind(decl) == "app":
            if kind == "method":
                c = app.classes[decl]
                mm = c.methods.get((name, desc))
                lvl = requires_api(mm.annotations) if mm else None
                lvl = lvl or requires_api(c.annotations)
                if lvl and lvl > min_sdk:
                    add("method", decl, name + desc, site, True, app_api=lvl)
            return
        if scope.kind(decl) == "bundled":
            return
        entry = framework_entry(scope, owner, name, desc, kind)
        site.via = f"inherited through {dotted(owner)}"
        add(kind, entry, member_id(kind, name, desc), site, True)

    for cf in app.classes.values():
        decl = Site(cf.name, "", None, None, cf.source)
        for s in [cf.super] + cf.interfaces:
            if s:
                add_class(s, decl, True)
        for (fname, fdesc) in cf.fields:
            for c in desc_classes(fdesc):
                add_class(c, Site(cf.name, fname, None, None, cf.source, via="field type"), False)
        for (mname, mdesc), m in cf.methods.items():
            for c in desc_classes(mdesc):
                add_class(c, Site(cf.name, mname + mdesc, None, None, cf.source, via="signature"), False)
            if m.code is None:
                continue
            mid = mname + mdesc
            try:
                insns = decode(m.code)
            except ValueError as e:
                problems.append(f"cannot decode {dotted(cf.name)}.{mname}: {e}")
                continue
            for ins in insns:
                op, pc = ins["op"], ins["pc"]

                def site():
                    return Site(cf.name, mid, pc, m.line_at(pc), cf.source)

                if 0xB2 <= op <= 0xB9:
                    kind, owner, name, desc = cp_member(cf, ins["idx"])
                    add_member("field" if kind == "Fieldref" else "method", owner, name, desc, site())
                elif op in (0xBB, 0xBD, 0xC0, 0xC1, 0xC5):
                    add_class(cp_class(cf, ins["idx"]), site(), True)
                elif op in (0x12, 0x13):
                    c = cf.cp[ins["idx"]]
                    if c[0] == "Class":
                        add_class(cf.cp[c[1]][1], site(), True)
                    elif c[0] == "MethodHandle":
                        handle_ref(cf, ins["idx"], site(), add_member)
                elif op == 0xBA:
                    bsm_idx = cf.cp[ins["idx"]][1]
                    mh, bargs = cf.bootstrap[bsm_idx]
                    _, bowner, bname, bdesc = cp_member(cf, cf.cp[mh][2])
                    if (bowner, bname) not in DESUGARED_BOOTSTRAPS:
                        problems.append(
                            f"invokedynamic with bootstrap {dotted(bowner)}.{bname} at {site().where()}: "
                            "not one D8 is known to desugar (LambdaMetafactory, StringConcatFactory)"
                        )
                    for a in bargs:
                        if cf.cp[a][0] == "MethodHandle":
                            handle_ref(cf, a, site(), add_member)
            for s, e, h, ct in m.handlers:
                if ct:
                    add_class(ct, Site(cf.name, mid, h, m.line_at(h), cf.source, via="catch type"), True)
    return refs, problems, notes


# invokedynamic bootstraps D8 rewrites into plain classes and calls (lambdas, string concatenation).
DESUGARED_BOOTSTRAPS = {
    ("java/lang/invoke/LambdaMetafactory", "metafactory"),
    ("java/lang/invoke/LambdaMetafactory", "altMetafactory"),
    ("java/lang/invoke/StringConcatFactory", "makeConcatWithConstants"),
    ("java/lang/invoke/StringConcatFactory", "makeConcat"),
}


def handle_ref(cf, k, site, add_member):
    ref = cf.cp[k][2]
    rk, owner, name, desc = cp_member(cf, ref)
    site.via = "method handle (lambda or method reference)"
    add_member("field" if rk == "Fieldref" else "method", owner, name, desc, site)


class CombinedProvider:
    """The app's classes over the compile API's android-all (the world javac/kotlinc saw)."""

    def __init__(self, scope: Scope):
        self.scope = scope

    def get(self, name):
        s = self.scope.app.get(name) or self.scope.compile.get(name)
        if s is None and self.scope.java_api is not None and name.startswith(("java/", "javax/")):
            s = self.scope.java_api.get(name)
        return s


def framework_entry(scope: Scope, owner: str, name: str, desc: str, kind: str) -> str:
    """For a member written against an app class but declared in the framework: the framework
    class through which resolution enters the framework (the app class's first framework
    superclass, or a framework interface), which is the owner the table names."""
    c = owner
    ifaces = []
    while c and scope.kind(c) == "app":
        cf = scope.app.classes[c]
        ifaces += cf.interfaces
        c = cf.super
    if c and resolve(scope.compile, c, name, desc, kind):
        return c
    todo = list(ifaces)
    while todo:
        i = todo.pop(0)
        if scope.kind(i) == "app":
            todo += scope.app.classes[i].interfaces
        elif resolve(scope.compile, i, name, desc, kind):
            return i
    return c or owner


# --------------------------------------------------------------------------------------------
# Interprocedural part: what is known at the entry of each app method
# --------------------------------------------------------------------------------------------


def analyze_app(app: DirProvider, min_sdk: int):
    """{(class, method id): {pc: lb}} for every method with code, and analysis failures.

    A method's entry bound is minSdk, except:
      * a method annotated @RequiresApi(N)/@TargetApi(N) (any annotation of that simple name,
        e.g. the app's own): N; the calls of it from the app are references that need SDK_INT >= N;
      * a private method (lambda bodies included: javac and kotlinc compile lambdas to private
        methods reached through invokedynamic): the least bound over its call sites and
        method-handle sites in its class, to a greatest fixpoint; none reachable: minSdk."""
    entry: dict = {}
    callers: dict = {}  # (class, mid) -> [(caller class, caller mid, pc)]
    for cf in app.classes.values():
        for (n, d), m in cf.methods.items():
            key = (cf.name, n + d)
            lvl = requires_api(m.annotations) or requires_api(cf.annotations)
            entry[key] = max(min_sdk, lvl) if lvl else min_sdk
            if m.access & ACC_PRIVATE and not lvl:
                entry[key] = INF
                callers[key] = []
    for cf in app.classes.values():
        for (n, d), m in cf.methods.items():
            if m.code is None:
                continue
            for ins in decode(m.code):
                targets = []
                if 0xB6 <= ins["op"] <= 0xB9:
                    targets.append(cp_member(cf, ins["idx"]))
                elif ins["op"] == 0xBA:
                    _, bargs = cf.bootstrap[cf.cp[ins["idx"]][1]]
                    targets += [cp_member(cf, cf.cp[a][2]) for a in bargs if cf.cp[a][0] == "MethodHandle"]
                elif ins["op"] in (0x12, 0x13) and cf.cp[ins["idx"]][0] == "MethodHandle":
                    targets.append(cp_member(cf, cf.cp[ins["idx"]][2]))
                for _, owner, tn, td in targets:
                    key = (owner, tn + td)
                    if key in callers:
                        callers[key].append((cf.name, n + d, ins["pc"]))
    results: dict = {}
    failures: list = []
    for _ in range(50):
        results.clear()
        for cf in app.classes.values():
            for (n, d), m in cf.methods.items():
                if m.code is None:
                    continue
                key = (cf.name, n + d)
                lb = entry[key] if entry[key] != INF else INF
                try:
                    results[key] = guard_analysis(cf, m, lb)[0] if lb != INF else None
                except (AnalysisError, ValueError, IndexError) as e:
                    results[key] = "error"
                    if not any(f[0] == key for f in failures):
                        failures.append((key, str(e)))
        changed = False
        for key, cs in callers.items():
            vals = []
            for c, mid, pc in cs:
                res = results.get((c, mid))
                if res == "error":
                    vals.append(min_sdk)
                elif res is None:
                    vals.append(INF)  # caller not reached (yet)
                else:
                    vals.append(res.get(pc, min_sdk))
            new = min(vals) if vals else INF
            if new != entry[key] and new < entry[key]:
                entry[key] = new
                changed = True
        if not changed:
            # Private methods still unreached are dead code or only reached from dead code:
            # analyse them from minSdk so that nothing goes unchecked.
            dead = [k for k in callers if entry[k] == INF]
            if not dead:
                break
            for k in dead:
                entry[k] = min_sdk
    return results, entry, failures


# --------------------------------------------------------------------------------------------
# The table and the manifest
# --------------------------------------------------------------------------------------------

COLUMNS = ["kind", "owner", "member", "api", "permissions", "guard", "source"]


@dataclass
class Row:
    lineno: int
    kind: str
    owner: str  # internal name
    member: str
    api: int
    permissions: list  # [[alternative, ...], ...] each alternative (name, from level)
    guard: int | None
    source: str
    note: str = ""

    @property
    def key(self):
        return (self.kind, self.owner, self.member)


def parse_permissions(text: str):
    if text.strip() in ("", "-"):
        return []
    out = []
    for item in text.split(","):
        alts = []
        for a in item.split("|"):
            a = a.strip()
            mm = re.fullmatch(r"([A-Za-z0-9_.]+)(?:@(\d+))?", a)
            if not mm:
                raise ValueError(f"bad permission {a!r}")
            name = mm.group(1)
            if "." not in name:
                name = "android.permission." + name
            alts.append((name, int(mm.group(2)) if mm.group(2) else 0))
        out.append(alts)
    return out


def load_table(path: str):
    rows, problems = [], []
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    header_seen = False
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if not header_seen:
            if cols[: len(COLUMNS)] != COLUMNS:
                problems.append(f"{path}:{n}: the first line that is not a comment must be the header {COLUMNS}")
                return rows, problems
            header_seen = True
            continue
        if len(cols) < len(COLUMNS):
            problems.append(f"{path}:{n}: {len(cols)} columns, want {len(COLUMNS)} (tab-separated)")
            continue
        kind, owner, member, api, perms, guard, source = cols[:7]
        note = "\t".join(cols[7:])
        try:
            if kind not in ("class", "method", "field"):
                raise ValueError(f"kind {kind!r}")
            if (kind == "class") != (member == "-"):
                raise ValueError("a class row has member '-', a member row a name and descriptor")
            if kind == "method" and not re.fullmatch(r"[^(]+\([^)]*\)\S+", member):
                raise ValueError(f"method {member!r} needs name(args)ret")
            if kind == "field" and not re.fullmatch(r"[^:(]+:\S+", member):
                raise ValueError(f"field {member!r} needs name:descriptor")
            if not re.fullmatch(r"\d+", api):
                raise ValueError(f"api {api!r}")
            g = None
            if guard != "-":
                mm = re.fullmatch(r"SDK_INT>=(\d+)", guard)
                if not mm:
                    raise ValueError(f"guard {guard!r}: '-' or SDK_INT>=N")
                g = int(mm.group(1))
            if not source.strip() or source.strip() == "-":
                raise ValueError("no source cited")
            rows.append(Row(n, kind, owner.replace(".", "/"), member, int(api), parse_permissions(perms), g,
                            source, note))
        except ValueError as e:
            problems.append(f"{path}:{n}: {e}")
    return rows, problems


def table_sort_key(kind: str, owner_dotted: str, member: str):
    return (owner_dotted, {"class": 0, "field": 1, "method": 2}[kind], member)


ANDROID_NS = "{http://schemas.android.com/apk/res/android}"


def load_manifest(path: str):
    """{permission: (min level, max level)} of <uses-permission> (and -sdk-23) elements."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise InputError(f"{path}: {e}")
    perms = {}
    for el in root:
        if el.tag not in ("uses-permission", "uses-permission-sdk-23", "uses-permission-sdk-m"):
            continue
        name = el.get(ANDROID_NS + "name")
        mx = el.get(ANDROID_NS + "maxSdkVersion")
        lo = 23 if el.tag != "uses-permission" else 0
        perms[name] = (lo, int(mx) if mx else INF)
    return perms


def read_min_sdk(default: int) -> int:
    props = os.path.join(REPO, "android", "app", "app.properties")
    if os.path.exists(props):
        with open(props, encoding="utf-8") as fh:
            for line in fh:
                mm = re.fullmatch(r"\s*minSdk\s*=\s*(\d+)\s*", line)
                if mm:
                    return int(mm.group(1))
    return default


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------


def member_label(kind, owner, member):
    if kind == "class":
        return dotted(owner)
    return f"{dotted(owner)}.{member}"


def load_backports(path: str | None) -> set:
    """Output of `java -cp r8.jar com.android.tools.r8.BackportedMethodList --min-api N`:
    methods D8 rewrites into the app's own code, so the device never resolves them."""
    if not path:
        return set()
    out = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if "#" in line:
                o, m = line.split("#", 1)
                out.add((o, m))
    return out


def run_check(args, out=sys.stdout) -> int:
    min_sdk = args.min_sdk or read_min_sdk(24)
    app = DirProvider(args.classes)
    compile_jar = JarProvider(args.android_all_compile, "compile android-all")
    min_jar = JarProvider(args.android_all_min, f"android-all API {min_sdk}")
    min_sig = SignatureProvider(args.api_signature_min, f"SDK API {min_sdk}")
    backports = load_backports(args.d8_backports)
    scope = Scope(app, compile_jar, args.bundled_prefix, min_sig)
    perms = load_manifest(args.manifest)
    rows, problems = load_table(args.table)
    fails: list = list(problems)

    refs, cproblems, notes = collect(app, scope, min_sdk)
    fails += cproblems
    results, entry, afail = analyze_app(app, min_sdk)
    for (c, mid), msg in afail:
        fails.append(f"guard analysis failed in {dotted(c)}.{mid.split('(')[0]}: {msg} "
                     "(its references count as unguarded)")
    for r in refs.values():
        for s in r.sites:
            if s.pc is None:
                s.lb = min_sdk
            else:
                res = results.get((s.cls, s.method))
                s.lb = res.get(s.pc, min_sdk) if isinstance(res, dict) else min_sdk

    # Sorted, no duplicates.
    seen = {}
    prev = None
    for row in rows:
        k = row.key
        if k in seen:
            fails.append(f"table line {row.lineno}: duplicate of line {seen[k]}")
        seen[k] = row.lineno
        sk = table_sort_key(row.kind, dotted(row.owner), row.member)
        if prev and sk < prev[0]:
            fails.append(f"table line {row.lineno}: not sorted (belongs before line {prev[1]}); "
                         "order: owner, then class/field/method, then member")
        prev = (sk, row.lineno)
    by_key = {row.key: row for row in rows}

    exists = in_api

    above = []  # (ref, row or None, needed level)
    required_perms = {}
    for key, ref in sorted(refs.items(), key=lambda kv: table_sort_key(kv[0][0], dotted(kv[0][1]), kv[0][2])):
        kind, owner, member = key
        label = member_label(kind, owner, member)
        ns = scope.kind(owner)
        row = by_key.get(key)
        if ref.app_api:  # a call of the app's own @RequiresApi method
            above.append((ref, None, ref.app_api))
            continue
        if ns == "java" and kind != "class" and (owner, member) in backports:
            notes.append(f"{label}: backported by D8 at --min-api {min_sdk} (not resolved on the device)")
            if row:
                fails.append(f"table line {row.lineno}: {label} is backported by D8; drop the row")
            continue
        in_min = exists(min_jar, kind, owner, member) if ns == "framework" else True
        in_sig = exists(min_sig, kind, owner, member)
        if not exists(compile_jar, kind, owner, member) and ns == "framework":
            fails.append(f"{label}: not found in the compile android-all either (resolution problem?)")
        if row is None:
            if ns == "framework":
                fails.append(f"{label}: referenced at {ref.sites[0].where()} but not in the table")
                continue
            if in_sig:
                continue  # a java.* member of API <= minSdk: no row needed
            fails.append(f"{label}: not in the API-{min_sdk} SDK (java.* above minSdk) and not in the table "
                         f"(referenced at {ref.sites[0].where()})")
            continue
        row.used = True
        if row.api <= min_sdk and not (in_min and in_sig):
            where = " and ".join(n for n, ok in ((f"android-all API {min_sdk}", in_min),
                                                  (f"the public API-{min_sdk} SDK", in_sig)) if not ok)
            fails.append(f"table line {row.lineno}: {label} says API {row.api} <= minSdk {min_sdk}, "
                         f"but it is absent from {where}")
        if row.api > min_sdk and row.guard is None:
            fails.append(f"table line {row.lineno}: {label} is API {row.api} > minSdk {min_sdk}: "
                         f"its guard must be SDK_INT>={row.api}, not '-'")
        if row.guard is not None and row.guard < row.api:
            fails.append(f"table line {row.lineno}: {label}: guard SDK_INT>={row.guard} is below its API level {row.api}")
        if row.guard is not None and row.guard <= min_sdk:
            fails.append(f"table line {row.lineno}: {label}: guard SDK_INT>={row.guard} proves nothing at minSdk {min_sdk}; use '-'")
        if (not in_min or not in_sig) and (row.guard is None or row.guard <= min_sdk):
            fails.append(f"{label}: absent from the API-{min_sdk} platform, so it needs a row with a guard "
                         f"SDK_INT>=N, N > {min_sdk} (table line {row.lineno})")
        need = row.guard if row.guard is not None else None
        if need:
            above.append((ref, row, need))
        for alts in row.permissions:
            names = " or ".join(a for a, _ in alts)
            required_perms.setdefault(names, set()).add(label)
            ok = False
            for name, from_level in alts:
                if name in perms:
                    lo, hi = perms[name]
                    if hi < INF:
                        # Not requested on devices above maxSdkVersion, where the API still runs.
                        fails.append(f"{label} needs {name}, but the manifest declares it only up to "
                                     f"maxSdkVersion {hi} (table line {row.lineno})")
                    ok = True
                    break
            if not ok:
                fails.append(f"{label} needs permission {names}, which the manifest ({args.manifest}) "
                             f"does not declare with <uses-permission> (table line {row.lineno})")

    # The guards.
    guard_report = []
    for ref, row, need in above:
        label = member_label(ref.kind, ref.owner, ref.member)
        bad, sites = [], 0
        for s in ref.sites:
            if s.pc is None:
                continue  # a type in a signature loads nothing by itself
            sites += 1
            if s.lb < need:
                bad.append(s)
        what = f"@RequiresApi({need}) app method" if row is None else f"API {row.api}"
        for s in bad:
            fails.append(f"{label} ({what}) is not guarded by SDK_INT>={need} at {s.where()}: "
                         f"on some path SDK_INT is only known to be >= {s.lb}")
        dead = sum(1 for s in ref.sites if s.pc is not None and s.lb >= INF)
        guard_report.append((label, need, sites, len(bad), dead))

    for row in rows:
        if not getattr(row, "used", False):
            fails.append(f"table line {row.lineno}: {member_label(row.kind, row.owner, row.member)} "
                         "is no longer referenced by the bytecode: remove the row")

    if args.skeleton:
        for key, ref in sorted(refs.items(), key=lambda kv: table_sort_key(kv[0][0], dotted(kv[0][1]), kv[0][2])):
            if key in by_key or scope.kind(key[1]) != "framework" or ref.app_api:
                continue
            kind, owner, member = key
            m = member
            in_min = exists(min_jar, kind, owner, member) and exists(min_sig, kind, owner, member)
            print("\t".join([kind, dotted(owner), m, "?" if in_min else "?>" + str(min_sdk), "-",
                             "-" if in_min else "SDK_INT>=?", "?"]), file=out)
        return 0

    # Summary.
    nfw = sum(1 for k in refs if scope.kind(k[1]) == "framework")
    njava = sum(1 for k in refs if scope.kind(k[1]) == "java")
    print(f"platform contract: {len(app.classes)} app classes, minSdk {min_sdk}, targetSdk {args.target_sdk}", file=out)
    print(f"  references: {len(refs)} ({nfw} framework, {njava} java.*/javax.*), "
          f"{sum(len(r.sites) for r in refs.values())} sites; table rows: {len(rows)}", file=out)
    print(f"  permissions required by the table ({len(required_perms)}):", file=out)
    for p in sorted(required_perms):
        ok = any(a in perms for a in p.split(" or "))
        print(f"    {'ok     ' if ok else 'MISSING'} {p}  <- {', '.join(sorted(required_perms[p]))}", file=out)
    needed = {a for p in required_perms for a in p.split(" or ")}
    extra = sorted(p for p in perms if p not in needed)
    if extra:
        print(f"  declared in the manifest, required by no referenced API (intents, native code, ...): "
              f"{', '.join(x.replace('android.permission.', '') for x in extra)}", file=out)
    print(f"  references above minSdk {min_sdk}, and their guards ({len(guard_report)}):", file=out)
    for label, need, sites, nbad, dead in sorted(guard_report):
        status = "ok" if nbad == 0 else f"{nbad} UNGUARDED"
        print(f"    SDK_INT>={need:<3} {label}: {sites} site(s), {status}"
              f"{f', {dead} unreachable' if dead else ''}", file=out)
    for n in notes:
        print(f"  note: {n}", file=out)
    if fails:
        for f in fails:
            print(f"FAIL: {f}", file=out)
        print(f"platform contract: {len(fails)} problem(s)", file=out)
        return 1
    print("platform contract: OK", file=out)
    return 0


# --------------------------------------------------------------------------------------------
# Library report: the bundled Kotlin stdlib's java.* references above minSdk (a note, never fails)
# --------------------------------------------------------------------------------------------


def library_report(args, out=sys.stdout):
    min_sdk = args.min_sdk or read_min_sdk(24)
    sig = SignatureProvider(args.api_signature_min, "")
    backports = load_backports(args.d8_backports)
    for jar in args.library_report:
        lib = DirProvider([jar])
        missing: dict = {}
        for cf in lib.classes.values():
            for (mn, md), m in cf.methods.items():
                if m.code is None:
                    continue
                for ins in decode(m.code):
                    ref = None
                    if 0xB2 <= ins["op"] <= 0xB9:
                        k, o, n, d = cp_member(cf, ins["idx"])
                        o = elem_class(o) or "java/lang/Object"
                        if o.startswith(("java/", "javax/")) and (o, n + d) not in backports:
                            kind = "field" if k == "Fieldref" else "method"
                            if resolve(sig, o, n, d, kind) is None:
                                ref = f"{dotted(o)}.{member_id(kind, n, d)}"
                    elif ins["op"] in (0xBB, 0xC0, 0xC1, 0xBD):
                        o = elem_class(cp_class(cf, ins["idx"]))
                        if o and o.startswith(("java/", "javax/")) and sig.get(o) is None:
                            ref = dotted(o)
                    if ref:
                        missing.setdefault(ref, set()).add(dotted(cf.name))
        print(f"{jar}: {len(lib.classes)} classes; java.* references absent from the API-{min_sdk} SDK "
              f"(after D8 backports): {len(missing)}", file=out)
        for ref in sorted(missing):
            users = sorted(missing[ref])
            print(f"  {ref}  <- {', '.join(users[:4])}{' ...' if len(users) > 4 else ''}", file=out)
    return 0


# --------------------------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------------------------

FIXTURE = r"""
package fixture;

import android.content.Context;
import android.content.Intent;
import android.os.Build;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;

@Retention(RetentionPolicy.CLASS)
@interface RequiresApi { int value(); }

public class Guards {
    Context c; Intent i; boolean flag; int x;

    void ok_ge()            { if (Build.VERSION.SDK_INT >= 26) c.startForegroundService(i); }
    void ok_gt()            { if (Build.VERSION.SDK_INT > 25) c.startForegroundService(i); }
    void ok_reversed()      { if (26 <= Build.VERSION.SDK_INT) c.startForegroundService(i); }
    void ok_early_return()  { if (Build.VERSION.SDK_INT < 26) return; c.startForegroundService(i); }
    void ok_and()           { if (Build.VERSION.SDK_INT >= 26 && flag) c.startForegroundService(i); }
    void ok_boolean_local() { boolean o = Build.VERSION.SDK_INT >= 26; if (o) c.startForegroundService(i); }
    void ok_int_local()     { int v = Build.VERSION.SDK_INT; if (v >= 26) c.startForegroundService(i); }
    void ok_not_below()     { boolean old = Build.VERSION.SDK_INT < 26; if (!old) c.startForegroundService(i); }
    void ok_higher()        { if (Build.VERSION.SDK_INT >= 30) c.startForegroundService(i); }
    void ok_loop()          { for (int k = 0; k < x; k++) { if (Build.VERSION.SDK_INT >= 26) c.startForegroundService(i); } }
    void ok_try()           { if (Build.VERSION.SDK_INT >= 26) { try { c.startForegroundService(i); }
                              catch (RuntimeException e) { c.startForegroundService(i); } } }
    void ok_switch()        { switch (Build.VERSION.SDK_INT) { case 27: c.startForegroundService(i); break; default: } }
    void ok_ternary()       { Object o = Build.VERSION.SDK_INT >= 26 ? c.startForegroundService(i) : null; }
    void ok_lambda()        { if (Build.VERSION.SDK_INT >= 26) run(() -> c.startForegroundService(i)); }
    void ok_private()       { if (Build.VERSION.SDK_INT >= 26) helper(); }
    private void helper()   { c.startForegroundService(i); }
    @RequiresApi(26) void annotated() { c.startForegroundService(i); }
    void ok_call_annotated(){ if (Build.VERSION.SDK_INT >= 26) annotated(); }

    void bad_none()         { c.startForegroundService(i); }
    void bad_low()          { if (Build.VERSION.SDK_INT >= 25) c.startForegroundService(i); }
    void bad_else()         { if (Build.VERSION.SDK_INT >= 26) { x = 1; } else { c.startForegroundService(i); } }
    void bad_or()           { if (Build.VERSION.SDK_INT >= 26 || flag) c.startForegroundService(i); }
    void bad_variable()     { if (Build.VERSION.SDK_INT >= x) c.startForegroundService(i); }
    void bad_after_if()     { if (Build.VERSION.SDK_INT >= 26) { x = 1; } c.startForegroundService(i); }
    void bad_eq_other()     { if (Build.VERSION.SDK_INT == 25) c.startForegroundService(i); }
    void bad_lambda()       { run(() -> c.startForegroundService(i)); }
    void bad_helper2()      { helper2(); }
    void ok_helper2()       { if (Build.VERSION.SDK_INT >= 26) helper2(); }
    private void helper2()  { c.startForegroundService(i); }
    void bad_call_annotated() { annotated(); }
    Object ok_java_time()   { return Build.VERSION.SDK_INT >= 26 ? java.time.Instant.now() : null; }
    Object ok_java_map(java.util.Map<String, String> m) { return m.getOrDefault("k", "v"); }

    static void run(Runnable r) { r.run(); }
}
"""


def self_test(args) -> int:
    results = []

    def expect(name, cond, detail=""):
        results.append((name, cond))
        print(f"{'PASS' if cond else 'FAIL'}: {name}{(' - ' + detail) if detail and not cond else ''}")

    tmp = tempfile.mkdtemp(prefix="platform-contract-")
    try:
        # 1. The guard analysis on javac-compiled fixtures (the app's kotlinc output is the other
        #    half: the real check below).
        src = os.path.join(tmp, "src", "fixture")
        os.makedirs(src)
        with open(os.path.join(src, "Guards.java"), "w") as fh:
            fh.write(FIXTURE)
        out = os.path.join(tmp, "fixture-classes")
        javac = shutil.which("javac")
        if not javac:
            expect("javac available for the guard fixtures", False)
        else:
            p = subprocess.run([javac, "-nowarn", "-cp", args.android_all_compile, "-d", out,
                                os.path.join(src, "Guards.java")], capture_output=True, text=True)
            expect("fixtures compile", p.returncode == 0, p.stderr[-2000:])
            if p.returncode == 0:
                app = DirProvider([out])
                compile_jar = JarProvider(args.android_all_compile, "")
                scope = Scope(app, compile_jar, args.bundled_prefix)
                refs, _, _ = collect(app, scope, 24)
                results_, entry, failures = analyze_app(app, 24)
                expect("guard analysis ran on every fixture method", not failures, str(failures))
                target = ("method", "android/content/Context", "startForegroundService(Landroid/content/Intent;)Landroid/content/ComponentName;")
                verdict: dict = {}
                for s in refs[target].sites:
                    res = results_.get((s.cls, s.method))
                    lb = res.get(s.pc, 24) if isinstance(res, dict) else 24
                    verdict.setdefault(s.method.split("(")[0], []).append(lb >= 26)
                ann = ("method", "fixture/Guards", "annotated()V")
                expect("a call of an app method marked @RequiresApi(26) is a reference needing 26",
                       ann in refs and refs[ann].app_api == 26)
                for s in refs.get(ann, Ref("", "", "")).sites:
                    res = results_.get((s.cls, s.method))
                    verdict.setdefault(s.method.split("(")[0], []).append(res.get(s.pc, 24) >= 26)
                for mname, oks in sorted(verdict.items()):
                    base = mname
                    if mname.startswith("lambda$"):
                        base = mname.split("$")[1]
                    if base in ("helper", "annotated"):
                        want = True
                    elif base == "helper2":
                        want = False
                    else:
                        want = base.startswith("ok_")
                    expect(f"guard {'proved' if want else 'refused'}: {mname}", all(oks) == want,
                           f"sites {oks}")
                named = {m.split("(")[0] for m in verdict}
                indirect = {"ok_lambda", "bad_lambda", "ok_private", "ok_helper2", "bad_helper2"}
                for (c, mid) in results_:
                    n = mid.split("(")[0]
                    if n.startswith(("ok_", "bad_")) and n not in named | indirect and "java" not in n:
                        expect(f"fixture {n} has a reference", False)
                sig = SignatureProvider(args.api_signature_min, "")
                expect("java.time.Instant.now() (API 26) is absent from the API-24 SDK signature",
                       ("method", "java/time/Instant", "now()Ljava/time/Instant;") in refs
                       and not in_api(sig, "method", "java/time/Instant", "now()Ljava/time/Instant;"))
                expect("java.util.Map.getOrDefault (API 24) is present in the API-24 SDK signature",
                       in_api(sig, "method", "java/util/Map", "getOrDefault(Ljava/lang/Object;Ljava/lang/Object;)Ljava/lang/Object;"))
                inst = refs.get(("method", "java/time/Instant", "now()Ljava/time/Instant;"))
                if inst:
                    res = results_.get((inst.sites[0].cls, inst.sites[0].method))
                    expect("java.time.Instant.now() guarded by SDK_INT>=26 is proved",
                           isinstance(res, dict) and res.get(inst.sites[0].pc, 0) >= 26)

        # 2. The real app: the check passes, and fails for each kind of lie.
        def run(**over):
            a = argparse.Namespace(**vars(args))
            for k, v in over.items():
                setattr(a, k, v)
            buf = io.StringIO()
            try:
                rc = run_check(a, buf)
            except InputError as e:
                return 2, str(e)
            return rc, buf.getvalue()

        rc, text = run()
        expect("the check passes on the app as it is", rc == 0, text[-3000:])

        with open(args.manifest, encoding="utf-8") as fh:
            manifest = fh.read()
        stripped = re.sub(r'<uses-permission\s+android:name="android\.permission\.CHANGE_NETWORK_STATE"\s*/>', "", manifest)
        mpath = os.path.join(tmp, "AndroidManifest.xml")
        with open(mpath, "w", encoding="utf-8") as fh:
            fh.write(stripped)
        rc, text = run(manifest=mpath)
        hit = [l for l in text.splitlines() if l.startswith("FAIL:") and "requestNetwork" in l
               and "CHANGE_NETWORK_STATE" in l]
        expect("without CHANGE_NETWORK_STATE in the manifest the check fails naming "
               "ConnectivityManager.requestNetwork and the permission", stripped != manifest and rc == 1 and bool(hit),
               text[-2000:])
        for l in hit:
            print(f"      {l}")

        with open(args.table, encoding="utf-8") as fh:
            table = fh.read().splitlines(keepends=True)

        def mutated(fn):
            lines = [fn(l) for l in table]
            p = os.path.join(tmp, "table.tsv")
            with open(p, "w", encoding="utf-8") as fh:
                fh.write("".join(x for x in lines if x is not None))
            return p

        def row_of(pred):
            for l in table:
                c = l.rstrip("\n").split("\t")
                if len(c) >= 7 and not l.startswith("#") and pred(c):
                    return l
            return None

        victim = row_of(lambda c: c[0] == "method" and "requestNetwork" in c[2])
        rc, text = run(table=mutated(lambda l: None if l is victim else l))
        expect("a referenced member missing from the table fails",
               rc == 1 and "requestNetwork" in text and "not in the table" in text, text[-1500:])

        above = row_of(lambda c: c[5] != "-" and c[0] == "method")
        if above:
            def lie(l):
                if l is not above:
                    return l
                c = l.rstrip("\n").split("\t")
                c[3], c[5] = "24", "-"
                return "\t".join(c) + "\n"
            rc, text = run(table=mutated(lie))
            expect(f"a row claiming API 24 for {above.split(chr(9))[1]}.{above.split(chr(9))[2].split('(')[0]} "
                   "(absent at 24) fails", rc == 1 and "absent from" in text, text[-1500:])

            def weak(l):
                if l is not above:
                    return l
                c = l.rstrip("\n").split("\t")
                c[5] = "-"
                return "\t".join(c) + "\n"
            rc, text = run(table=mutated(weak))
            expect("a row above minSdk without a guard fails", rc == 1 and "its guard must be" in text, text[-1500:])

        sdk34 = row_of(lambda c: c[5] == "SDK_INT>=34")
        if sdk34:
            def raise_guard(l):
                if l is not sdk34:
                    return l
                c = l.rstrip("\n").split("\t")
                c[3], c[5] = "35", "SDK_INT>=35"
                return "\t".join(c) + "\n"
            rc, text = run(table=mutated(raise_guard))
            expect("a call guarded by SDK_INT>=34 does not satisfy a row needing 35",
                   rc == 1 and "is not guarded by SDK_INT>=35" in text, text[-1500:])

        def stale(l):
            return l
        extra = "method\tandroid.net.VpnService\tzzzNotCalled()V\t14\t-\t-\thttps://developer.android.com/reference/android/net/VpnService\n"
        p = mutated(stale)
        with open(p, "a", encoding="utf-8") as fh:
            fh.write(extra)
        rc, text = run(table=p)
        expect("a row no longer referenced fails", rc == 1 and "no longer referenced" in text, text[-1500:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bad = [n for n, ok in results if not ok]
    print(f"self-test: {len(results) - len(bad)} passed, {len(bad)} failed")
    return 1 if bad else 0


# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", action="append",
                    help="the app's compiled classes: a directory or a jar (repeatable); "
                         "default android/jvm/target/classes")
    ap.add_argument("--manifest", default=os.path.join(REPO, "android/app/src/main/AndroidManifest.xml"))
    ap.add_argument("--table", default=os.path.join(HERE, "platform-contract.tsv"))
    ap.add_argument("--android-all-min", help=f"android-all jar of minSdk (default: {ANDROID_ALL_MIN} in ~/.m2)")
    ap.add_argument("--android-all-compile", help=f"android-all jar the app compiles against (default: {ANDROID_ALL_COMPILE})")
    ap.add_argument("--api-signature-min", help=f"public SDK API of minSdk (default: {API_SIGNATURE_MIN})")
    ap.add_argument("--d8-backports", help="output of com.android.tools.r8.BackportedMethodList --min-api <minSdk>: "
                                           "java.* methods D8 rewrites need no guard")
    ap.add_argument("--offline", action="store_true",
                    help="do not fetch missing default inputs with mvn dependency:get (Maven Central)")
    ap.add_argument("--min-sdk", type=int, help="default: minSdk of android/app/app.properties, else 24")
    ap.add_argument("--target-sdk", type=int, default=35)
    ap.add_argument("--bundled-prefix", action="append",
                    help="class name prefixes packaged into the APK (not the platform's); "
                         "default kotlin/ kotlinx/ org/jetbrains/annotations/ org/intellij/lang/annotations/")
    ap.add_argument("--skeleton", action="store_true", help="print table rows for unlisted framework references")
    ap.add_argument("--library-report", action="append",
                    help="a bundled library jar (e.g. kotlin-stdlib): list its java.* references absent at minSdk (never fails)")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args(argv)
    args.classes = args.classes or [os.path.join(REPO, "android/jvm/target/classes")]
    args.bundled_prefix = args.bundled_prefix or ["kotlin/", "kotlinx/", "org/jetbrains/annotations/",
                                                  "org/intellij/lang/annotations/"]
    try:
        args.android_all_min = args.android_all_min or ensure_artifact(ANDROID_ALL_MIN, not args.offline)
        args.android_all_compile = args.android_all_compile or ensure_artifact(ANDROID_ALL_COMPILE, not args.offline)
        args.api_signature_min = args.api_signature_min or ensure_artifact(API_SIGNATURE_MIN, not args.offline)
        if args.library_report:
            return library_report(args)
        if args.self_test:
            return self_test(args)
        return run_check(args)
    except InputError as e:
        print(f"platform contract: bad input: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
