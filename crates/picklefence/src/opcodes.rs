//! The pickle opcode table, as `Lib/pickletools.py` lists it.

/// How an opcode's argument is encoded in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    None,
    /// Unsigned little-endian integer of 1, 2 or 4 bytes.
    Uint1,
    Uint2,
    Uint4,
    Uint8,
    /// Signed little-endian 4-byte integer.
    Int4,
    /// Big-endian IEEE double.
    Float8,
    /// Newline-terminated decimal (INT, GET, PUT); "00"/"01" are booleans for INT.
    DecimalNlShort,
    /// Newline-terminated decimal with optional trailing `L` (LONG).
    DecimalNlLong,
    /// Newline-terminated float text (FLOAT).
    FloatNl,
    /// Newline-terminated quoted, escaped string (STRING).
    StringNl,
    /// Newline-terminated raw string (PERSID).
    StringNlNoEscape,
    /// Two newline-terminated raw strings (GLOBAL, INST).
    StringNlNoEscapePair,
    /// Newline-terminated raw-unicode-escape text (UNICODE).
    UnicodeStringNl,
    /// Length-prefixed byte strings (1/4/8-byte length).
    Bytes1,
    Bytes4,
    Bytes8,
    /// Length-prefixed latin-1 strings (SHORT_BINSTRING, BINSTRING).
    String1,
    String4,
    /// Length-prefixed UTF-8 strings.
    Unicode1,
    Unicode4,
    Unicode8,
    /// Length-prefixed bytearray (BYTEARRAY8).
    ByteArray8,
    /// Length-prefixed two's-complement little-endian integers.
    Long1,
    Long4,
}

macro_rules! opcodes {
    ($( $variant:ident = $code:expr, $name:expr, $arg:ident, $proto:expr; )*) => {
        /// Every opcode of protocols 0–5.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Opcode {
            $( $variant = $code, )*
        }

        impl Opcode {
            /// Every opcode, in table order.
            pub const ALL: &'static [Opcode] = &[$( Opcode::$variant, )*];

            pub fn from_byte(byte: u8) -> Option<Opcode> {
                match byte {
                    $( $code => Some(Opcode::$variant), )*
                    _ => None,
                }
            }

            /// The name `pickletools` uses.
            pub fn name(self) -> &'static str {
                match self {
                    $( Opcode::$variant => $name, )*
                }
            }

            pub fn arg_kind(self) -> ArgKind {
                match self {
                    $( Opcode::$variant => ArgKind::$arg, )*
                }
            }

            /// The protocol that introduced the opcode.
            pub fn protocol(self) -> u8 {
                match self {
                    $( Opcode::$variant => $proto, )*
                }
            }
        }
    };
}

opcodes! {
    Int = b'I', "INT", DecimalNlShort, 0;
    BinInt = b'J', "BININT", Int4, 1;
    BinInt1 = b'K', "BININT1", Uint1, 1;
    BinInt2 = b'M', "BININT2", Uint2, 1;
    Long = b'L', "LONG", DecimalNlLong, 0;
    Long1 = 0x8a, "LONG1", Long1, 2;
    Long4 = 0x8b, "LONG4", Long4, 2;
    String = b'S', "STRING", StringNl, 0;
    BinString = b'T', "BINSTRING", String4, 1;
    ShortBinString = b'U', "SHORT_BINSTRING", String1, 1;
    BinBytes = b'B', "BINBYTES", Bytes4, 3;
    ShortBinBytes = b'C', "SHORT_BINBYTES", Bytes1, 3;
    BinBytes8 = 0x8e, "BINBYTES8", Bytes8, 4;
    ByteArray8 = 0x96, "BYTEARRAY8", ByteArray8, 5;
    NextBuffer = 0x97, "NEXT_BUFFER", None, 5;
    ReadonlyBuffer = 0x98, "READONLY_BUFFER", None, 5;
    None = b'N', "NONE", None, 0;
    NewTrue = 0x88, "NEWTRUE", None, 2;
    NewFalse = 0x89, "NEWFALSE", None, 2;
    Unicode = b'V', "UNICODE", UnicodeStringNl, 0;
    ShortBinUnicode = 0x8c, "SHORT_BINUNICODE", Unicode1, 4;
    BinUnicode = b'X', "BINUNICODE", Unicode4, 1;
    BinUnicode8 = 0x8d, "BINUNICODE8", Unicode8, 4;
    Float = b'F', "FLOAT", FloatNl, 0;
    BinFloat = b'G', "BINFLOAT", Float8, 1;
    EmptyList = b']', "EMPTY_LIST", None, 1;
    Append = b'a', "APPEND", None, 0;
    Appends = b'e', "APPENDS", None, 1;
    List = b'l', "LIST", None, 0;
    EmptyTuple = b')', "EMPTY_TUPLE", None, 1;
    Tuple = b't', "TUPLE", None, 0;
    Tuple1 = 0x85, "TUPLE1", None, 2;
    Tuple2 = 0x86, "TUPLE2", None, 2;
    Tuple3 = 0x87, "TUPLE3", None, 2;
    EmptyDict = b'}', "EMPTY_DICT", None, 1;
    Dict = b'd', "DICT", None, 0;
    SetItem = b's', "SETITEM", None, 0;
    SetItems = b'u', "SETITEMS", None, 1;
    EmptySet = 0x8f, "EMPTY_SET", None, 4;
    AddItems = 0x90, "ADDITEMS", None, 4;
    FrozenSet = 0x91, "FROZENSET", None, 4;
    Pop = b'0', "POP", None, 0;
    Dup = b'2', "DUP", None, 0;
    Mark = b'(', "MARK", None, 0;
    PopMark = b'1', "POP_MARK", None, 1;
    Get = b'g', "GET", DecimalNlShort, 0;
    BinGet = b'h', "BINGET", Uint1, 1;
    LongBinGet = b'j', "LONG_BINGET", Uint4, 1;
    Put = b'p', "PUT", DecimalNlShort, 0;
    BinPut = b'q', "BINPUT", Uint1, 1;
    LongBinPut = b'r', "LONG_BINPUT", Uint4, 1;
    Memoize = 0x94, "MEMOIZE", None, 4;
    Ext1 = 0x82, "EXT1", Uint1, 2;
    Ext2 = 0x83, "EXT2", Uint2, 2;
    Ext4 = 0x84, "EXT4", Int4, 2;
    Global = b'c', "GLOBAL", StringNlNoEscapePair, 0;
    StackGlobal = 0x93, "STACK_GLOBAL", None, 4;
    Reduce = b'R', "REDUCE", None, 0;
    Build = b'b', "BUILD", None, 0;
    Inst = b'i', "INST", StringNlNoEscapePair, 0;
    Obj = b'o', "OBJ", None, 1;
    NewObj = 0x81, "NEWOBJ", None, 2;
    NewObjEx = 0x92, "NEWOBJ_EX", None, 4;
    Proto = 0x80, "PROTO", Uint1, 2;
    Stop = b'.', "STOP", None, 0;
    Frame = 0x95, "FRAME", Uint8, 4;
    PersId = b'P', "PERSID", StringNlNoEscape, 0;
    BinPersId = b'Q', "BINPERSID", None, 1;
}

impl Opcode {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Opcodes that import a global (or resolve one through the extension registry).
    pub fn imports(self) -> bool {
        matches!(
            self,
            Opcode::Global | Opcode::StackGlobal | Opcode::Inst | Opcode::Ext1 | Opcode::Ext2 | Opcode::Ext4
        )
    }

    /// Opcodes that call something the pickle put on the stack.
    pub fn calls(self) -> bool {
        matches!(
            self,
            Opcode::Reduce | Opcode::NewObj | Opcode::NewObjEx | Opcode::Obj | Opcode::Inst | Opcode::Build
        )
    }

    /// The highest protocol CPython knows (`pickle.HIGHEST_PROTOCOL`).
    pub const HIGHEST_PROTOCOL: u8 = 5;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_consistent() {
        assert_eq!(Opcode::ALL.len(), 68);
        for &op in Opcode::ALL {
            assert_eq!(Opcode::from_byte(op.code()), Some(op));
        }
    }
}
