"""A fast path for the PropertyCollector's big answers.

pyvmomi's SOAP deserializer is generic pure Python: for 2,000 VMs (half a million XML
elements) it spends ~4-5 s of CPU checking every field. This module sends the very same
request (serialised by pyvmomi, over the stub's own connection pool and session cookie),
parses the answer with ElementTree's C parser, and builds the *same* pyvmomi data objects
(real classes, so ``isinstance`` works) through cached type information and without
per-field checks. Any answer it does not understand (a SOAP fault, an unexpected shape) is
handed to pyvmomi's own deserializer, from the bytes already received: never a second call.

Written by hand because no library offers it; kept to the RetrievePropertiesEx family.
"""

from __future__ import annotations

import base64
import gzip
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime
from io import BytesIO
from typing import Any

from pyVmomi import SoapAdapter, VmomiSupport, vmodl

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
SOAP_BODY = "{http://schemas.xmlsoap.org/soap/envelope/}Body"
VIM_NS = VmomiSupport.XMLNS_VMODL_BASE

_ManagedObject = VmomiSupport.ManagedObject
_DataObject = VmomiSupport.DataObject
_Enum = VmomiSupport.Enum
_binary = VmomiSupport.binary


class Unsupported(Exception):
    """The answer is not what the fast path handles: use pyvmomi's deserializer."""


class FastCollector:
    """``RetrievePropertiesEx`` / ``ContinueRetrievePropertiesEx`` on ``collector``, decoded fast.

    Same call signatures and results as the pyvmomi methods (a ``RetrieveResult`` or None).
    """

    def __init__(self, collector: vmodl.query.PropertyCollector) -> None:
        self.collector = collector
        self.stub = collector._stub
        self._types: dict[str, type] = {}
        self._props: dict[tuple[type, str], tuple[str, type, bool]] = {}
        self._templates: dict[type, tuple[dict[str, Any], list[tuple[str, type]]]] = {}
        self._decoders: dict[type, Callable[[ET.Element], Any]] = {}
        self._by_xsi: dict[str, Callable[[ET.Element], Any]] = {}

    def RetrievePropertiesEx(self, specSet: list[Any], options: Any) -> Any:
        return self._call("RetrievePropertiesEx", [specSet, options])

    def ContinueRetrievePropertiesEx(self, token: str) -> Any:
        return self._call("ContinueRetrievePropertiesEx", [token])

    # -- transport -----------------------------------------------------------------------------

    def _call(self, method: str, args: list[Any]) -> Any:
        info = self.collector._GetMethodInfo(method)
        stub = self.stub
        body = stub.SerializeRequest(self.collector, info, args)
        headers = {
            "Cookie": stub.cookie,
            "SOAPAction": stub.versionId,
            "Content-Type": "text/xml; charset=UTF-8",
        }
        conn = stub.GetConnection()
        stream: _Stream | None = None
        try:
            conn.request("POST", stub.path, body, headers)
            response = conn.getresponse()
            gzipped = (response.getheader("Content-Encoding") or "").lower() == "gzip"
            if response.status == 200 and not gzipped:
                # Decode while the server is still sending: parsing overlaps the transfer.
                stream = _Stream(self)
            chunks = []
            while chunk := response.read(1 << 16):
                chunks.append(chunk)
                if stream is not None:
                    try:
                        stream.feed(chunk)
                    except (Unsupported, ET.ParseError):
                        stream = None
        except Exception:
            conn.close()
            stub.DropConnections()
            raise
        stub.ReturnConnection(conn)
        if stream is not None:
            try:
                return stream.close()
            except (Unsupported, ET.ParseError):
                pass
        data = b"".join(chunks)
        if gzipped:
            data = gzip.decompress(data)
        if response.status == 200:
            try:
                return self._decode_result(data)
            except (Unsupported, ET.ParseError):
                pass
        elif response.status != 500:
            raise SoapAdapter.HTTPException(f"{response.status} {response.reason}")
        # A fault, or a shape the fast path does not know: pyvmomi decodes the same bytes.
        result = SoapAdapter.SoapResponseDeserializer(stub).Deserialize(BytesIO(data), info.result)
        if response.status == 500 and isinstance(result, Exception):
            raise result
        return result

    # -- decoding --------------------------------------------------------------------------------

    def _decode_result(self, data: bytes) -> Any:
        root = ET.fromstring(data)
        body = root.find(SOAP_BODY)
        if body is None or len(body) != 1:
            raise Unsupported("no SOAP body")
        answer = body[0]
        returnval = [child for child in answer if _local(child.tag) == "returnval"]
        if not returnval:
            return None
        result = self._new(vmodl.query.PropertyCollector.RetrieveResult)
        objects = []
        for child in returnval[0]:
            name = _local(child.tag)
            if name == "token":
                result.__dict__["token"] = child.text or ""
            elif name == "objects":
                objects.append(self._object_content(child))
            else:
                raise Unsupported(name)
        result.__dict__["objects"] = objects
        return result

    def _object_content(self, elem: ET.Element) -> Any:
        content = self._new(vmodl.query.PropertyCollector.ObjectContent)
        props = []
        for child in elem:
            name = _local(child.tag)
            if name == "obj":
                content.__dict__["obj"] = self._moref(child, _ManagedObject)
            elif name == "propSet":
                prop = self._new(vmodl.DynamicProperty)
                for part in child:
                    part_name = _local(part.tag)
                    if part_name == "name":
                        prop.__dict__["name"] = part.text or ""
                    elif part_name == "val":
                        prop.__dict__["val"] = self._value(part, object)
                props.append(prop)
            elif name == "missingSet":
                continue  # properties the server could not read: absent, as for pyvmomi's callers
            else:
                raise Unsupported(name)
        content.__dict__["propSet"] = props
        return content

    def _moref(self, elem: ET.Element, declared: type) -> Any:
        kind = elem.get("type")
        cls = self._type(kind) if kind else declared
        return cls(elem.text or "", self.stub)

    def _type(self, xsi: str) -> type:
        cls = self._types.get(xsi)
        if cls is None:
            prefix, _, name = xsi.rpartition(":")
            if prefix in ("xsd", "xs"):
                cls = VmomiSupport.GetWsdlType(VmomiSupport.XMLNS_XSD, name)
            else:
                try:
                    cls = VmomiSupport.GetWsdlType(VIM_NS, name)
                except KeyError:
                    if name.endswith("ManagedObjectReference"):
                        cls = _ManagedObject if not name.startswith("ArrayOf") else _ManagedObject.Array
                    else:
                        try:
                            cls = VmomiSupport.GuessWsdlType(name)
                        except KeyError:
                            raise Unsupported(xsi) from None
            self._types[xsi] = cls
        return cls

    def _value(self, elem: ET.Element, declared: type) -> Any:
        xsi = elem.get(XSI_TYPE)
        if xsi:
            decode = self._by_xsi.get(xsi)
            if decode is None:
                cls = self._type(xsi)
                decode = self._by_xsi[xsi] = self._array(cls) if issubclass(cls, list) else self._decoder(cls)
            return decode(elem)
        return self._decoder(declared)(elem)

    def _array(self, cls: type) -> Callable[[ET.Element], Any]:
        item = cls.Item
        value = self._value

        def decode(elem: ET.Element) -> Any:
            return cls([value(child, item) for child in elem])

        return decode

    def _decoder(self, cls: type) -> Callable[[ET.Element], Any]:
        """How to decode an element declared (or typed) as ``cls``; one array item for a list type."""
        decode = self._decoders.get(cls)
        if decode is None:
            decode = self._decoders[cls] = self._make_decoder(cls)
        return decode

    def _make_decoder(self, cls: type) -> Callable[[ET.Element], Any]:
        if cls is object:
            raise Unsupported("untyped value")
        if issubclass(cls, list):
            return self._decoder(cls.Item)
        if issubclass(cls, _DataObject):
            return lambda elem: self._data_object(elem, cls)
        if issubclass(cls, _ManagedObject):
            return lambda elem: self._moref(elem, cls)
        if cls is bool:
            return lambda elem: elem.text in ("true", "1")
        if issubclass(cls, _Enum):
            return lambda elem: getattr(cls, elem.text or "", elem.text or "")
        if cls is datetime:
            return _datetime
        if cls is _binary:
            return lambda elem: _binary(base64.b64decode(elem.text or ""))
        if cls is type:
            return lambda elem: self._type(elem.text) if elem.text else None
        if issubclass(cls, (str, int, float)):
            return lambda elem: cls(elem.text or "")
        raise Unsupported(repr(cls))

    def _new(self, cls: type) -> Any:
        """An instance with the defaults pyvmomi's constructor would give, without its checks."""
        template = self._templates.get(cls)
        if template is None:
            template = self._templates[cls] = _template(cls)
        scalars, lists = template
        obj = cls.__new__(cls)
        fields = obj.__dict__
        fields.update(scalars)
        for name, array in lists:
            fields[name] = array()
        return obj

    def _data_object(self, elem: ET.Element, cls: type) -> Any:
        obj = self._new(cls)
        fields = obj.__dict__
        props = self._props
        value = self._value
        for child in elem:
            key = (cls, child.tag)
            info = props.get(key)
            if info is None:
                try:
                    prop = cls._GetPropertyInfo(_local(child.tag))
                except AttributeError:
                    raise Unsupported(f"{cls.__name__}.{child.tag}") from None
                info = props[key] = (prop.name, prop.type, issubclass(prop.type, list))
            name, ptype, is_list = info
            decoded = value(child, ptype)
            if is_list and not isinstance(decoded, list):
                fields[name].append(decoded)
            else:
                fields[name] = decoded
        return obj


class _Stream:
    """Incremental decoding of a RetrievePropertiesEx answer: each ``objects`` element as it completes."""

    RESULT_DEPTH = 4  # Envelope / Body / <Method>Response / returnval

    def __init__(self, owner: FastCollector) -> None:
        self.owner = owner
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.returnval: ET.Element | None = None
        self.token: str | None = None
        self.objects: list[Any] = []

    def feed(self, chunk: bytes) -> None:
        self.parser.feed(chunk)
        self._drain()

    def close(self) -> Any:
        self.parser.close()
        self._drain()
        if self.returnval is None:
            return None
        result = self.owner._new(vmodl.query.PropertyCollector.RetrieveResult)
        if self.token is not None:
            result.__dict__["token"] = self.token
        result.__dict__["objects"] = self.objects
        return result

    def _drain(self) -> None:
        for event, elem in self.parser.read_events():
            if event == "start":
                self.depth += 1
                if self.depth == 3 and _local(elem.tag) == "Fault":
                    raise Unsupported("fault")
                if self.depth == self.RESULT_DEPTH:
                    if _local(elem.tag) != "returnval":
                        raise Unsupported(elem.tag)
                    self.returnval = elem
                continue
            if self.depth == self.RESULT_DEPTH + 1 and self.returnval is not None:
                name = _local(elem.tag)
                if name == "objects":
                    self.objects.append(self.owner._object_content(elem))
                elif name == "token":
                    self.token = elem.text or ""
                else:
                    raise Unsupported(name)
                self.returnval.remove(elem)  # always the only child left: keeps memory flat
            self.depth -= 1


def _template(cls: type) -> tuple[dict[str, Any], list[tuple[str, type]]]:
    """The defaults pyvmomi's DataObject.__init__ gives each property, computed once per class."""
    scalars: dict[str, Any] = {}
    lists: list[tuple[str, type]] = []
    for prop in cls._GetPropertyList():
        ptype = prop.type
        if issubclass(ptype, list):
            lists.append((prop.name, ptype))
            continue
        if prop.flags & VmomiSupport.F_OPTIONAL:
            value = None
        elif ptype is bool:
            value = False
        elif issubclass(ptype, _Enum):
            value = None
        elif issubclass(ptype, str):
            value = ""
        elif issubclass(ptype, (int, float)):
            value = ptype(0)
        else:
            value = None
        scalars[prop.name] = value
    return scalars, lists


def _datetime(elem: ET.Element) -> datetime:
    parsed = VmomiSupport.Iso8601.ParseISO8601(elem.text or "")
    if parsed is None:
        raise Unsupported(f"bad dateTime {elem.text!r}")
    return parsed


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
