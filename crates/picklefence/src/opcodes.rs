//! The pickle opcode table, as `Lib/pickletools.py` lists it: each opcode's byte, name,
//! argument encoding, protocol and stack effect.

/// How an opcode's argument is encoded in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// No argument.
    None,
    /// Unsigned little-endian 1-byte integer.
    Uint1,
    /// Unsigned little-endian 2-byte integer.
    Uint2,
    /// Unsigned little-endian 4-byte integer.
    Uint4,
    /// Unsigned little-endian 8-byte integer.
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
    /// Byte string with a 1-byte length.
    Bytes1,
    /// Byte string with a 4-byte length.
    Bytes4,
    /// Byte string with an 8-byte length.
    Bytes8,
    /// Latin-1 string with a 1-byte length (SHORT_BINSTRING).
    String1,
    /// Latin-1 string with a 4-byte length (BINSTRING).
    String4,
    /// UTF-8 string with a 1-byte length.
    Unicode1,
    /// UTF-8 string with a 4-byte length.
    Unicode4,
    /// UTF-8 string with an 8-byte length.
    Unicode8,
    /// Length-prefixed bytearray (BYTEARRAY8).
    ByteArray8,
    /// Two's-complement little-endian integer with a 1-byte length.
    Long1,
    /// Two's-complement little-endian integer with a 4-byte length.
    Long4,
}

macro_rules! opcodes {
    ($( $variant:ident = $code:expr, $name:expr, $arg:ident, $proto:expr, $effect:expr; )*) => {
        /// Every opcode of protocols 0–5. The table below lists each one's byte, pickletools
        /// name, argument encoding, protocol and stack effect.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Opcode {
            $(
                #[doc = concat!("`", $name, "` (protocol ", stringify!($proto), "): ", $effect, ".")]
                $variant = $code,
            )*
        }

        impl Opcode {
            /// Every opcode, in table order.
            pub const ALL: &'static [Opcode] = &[$( Opcode::$variant, )*];

            /// The opcode a byte stands for, if any.
            pub fn from_byte(byte: u8) -> Option<Opcode> {
                match byte {
                    $( $code => Some(Opcode::$variant), )*
                    _ => None,
                }
            }

            /// The name `pickletools` uses.
            #[inline]
            pub fn name(self) -> &'static str {
                match self {
                    $( Opcode::$variant => $name, )*
                }
            }

            /// How the opcode's argument is encoded after it.
            #[inline]
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

            /// What the opcode does to the unpickler's stack, in words (pickletools'
            /// `stack_before -> stack_after`, with the imports and calls it makes in capitals).
            pub fn stack_effect(self) -> &'static str {
                match self {
                    $( Opcode::$variant => $effect, )*
                }
            }
        }
    };
}

opcodes! {
    Int = b'I', "INT", DecimalNlShort, 0, "push an int (or bool for 00/01)";
    BinInt = b'J', "BININT", Int4, 1, "push an int";
    BinInt1 = b'K', "BININT1", Uint1, 1, "push an int";
    BinInt2 = b'M', "BININT2", Uint2, 1, "push an int";
    Long = b'L', "LONG", DecimalNlLong, 0, "push an int";
    Long1 = 0x8a, "LONG1", Long1, 2, "push an int";
    Long4 = 0x8b, "LONG4", Long4, 2, "push an int";
    String = b'S', "STRING", StringNl, 0, "push a Python 2 str";
    BinString = b'T', "BINSTRING", String4, 1, "push a Python 2 str";
    ShortBinString = b'U', "SHORT_BINSTRING", String1, 1, "push a Python 2 str";
    BinBytes = b'B', "BINBYTES", Bytes4, 3, "push bytes";
    ShortBinBytes = b'C', "SHORT_BINBYTES", Bytes1, 3, "push bytes";
    BinBytes8 = 0x8e, "BINBYTES8", Bytes8, 4, "push bytes";
    ByteArray8 = 0x96, "BYTEARRAY8", ByteArray8, 5, "push a bytearray";
    NextBuffer = 0x97, "NEXT_BUFFER", None, 5, "push the next out-of-band buffer";
    ReadonlyBuffer = 0x98, "READONLY_BUFFER", None, 5, "make the buffer on top read-only";
    None = b'N', "NONE", None, 0, "push None";
    NewTrue = 0x88, "NEWTRUE", None, 2, "push True";
    NewFalse = 0x89, "NEWFALSE", None, 2, "push False";
    Unicode = b'V', "UNICODE", UnicodeStringNl, 0, "push a str";
    ShortBinUnicode = 0x8c, "SHORT_BINUNICODE", Unicode1, 4, "push a str";
    BinUnicode = b'X', "BINUNICODE", Unicode4, 1, "push a str";
    BinUnicode8 = 0x8d, "BINUNICODE8", Unicode8, 4, "push a str";
    Float = b'F', "FLOAT", FloatNl, 0, "push a float";
    BinFloat = b'G', "BINFLOAT", Float8, 1, "push a float";
    EmptyList = b']', "EMPTY_LIST", None, 1, "push []";
    Append = b'a', "APPEND", None, 0, "pop a value; append it to the list below";
    Appends = b'e', "APPENDS", None, 1, "pop to mark; extend the list below the mark";
    List = b'l', "LIST", None, 0, "pop to mark; push them as a list";
    EmptyTuple = b')', "EMPTY_TUPLE", None, 1, "push ()";
    Tuple = b't', "TUPLE", None, 0, "pop to mark; push them as a tuple";
    Tuple1 = 0x85, "TUPLE1", None, 2, "pop 1; push a 1-tuple";
    Tuple2 = 0x86, "TUPLE2", None, 2, "pop 2; push a 2-tuple";
    Tuple3 = 0x87, "TUPLE3", None, 2, "pop 3; push a 3-tuple";
    EmptyDict = b'}', "EMPTY_DICT", None, 1, "push {}";
    Dict = b'd', "DICT", None, 0, "pop to mark; push key/value pairs as a dict";
    SetItem = b's', "SETITEM", None, 0, "pop key, value; set it in the dict below";
    SetItems = b'u', "SETITEMS", None, 1, "pop to mark; set key/value pairs in the dict below the mark";
    EmptySet = 0x8f, "EMPTY_SET", None, 4, "push set()";
    AddItems = 0x90, "ADDITEMS", None, 4, "pop to mark; add them to the set below the mark";
    FrozenSet = 0x91, "FROZENSET", None, 4, "pop to mark; push them as a frozenset";
    Pop = b'0', "POP", None, 0, "discard the top of the stack (or a mark)";
    Dup = b'2', "DUP", None, 0, "push a copy of the top";
    Mark = b'(', "MARK", None, 0, "push a mark";
    PopMark = b'1', "POP_MARK", None, 1, "pop to mark and discard";
    Get = b'g', "GET", DecimalNlShort, 0, "push the memo entry";
    BinGet = b'h', "BINGET", Uint1, 1, "push the memo entry";
    LongBinGet = b'j', "LONG_BINGET", Uint4, 1, "push the memo entry";
    Put = b'p', "PUT", DecimalNlShort, 0, "store the top in the memo";
    BinPut = b'q', "BINPUT", Uint1, 1, "store the top in the memo";
    LongBinPut = b'r', "LONG_BINPUT", Uint4, 1, "store the top in the memo";
    Memoize = 0x94, "MEMOIZE", None, 4, "store the top in the memo at the next index";
    Ext1 = 0x82, "EXT1", Uint1, 2, "IMPORT through the copyreg extension registry; push it";
    Ext2 = 0x83, "EXT2", Uint2, 2, "IMPORT through the copyreg extension registry; push it";
    Ext4 = 0x84, "EXT4", Int4, 2, "IMPORT through the copyreg extension registry; push it";
    Global = b'c', "GLOBAL", StringNlNoEscapePair, 0, "IMPORT module.name; push it";
    StackGlobal = 0x93, "STACK_GLOBAL", None, 4, "pop module, name; IMPORT module.name; push it";
    Reduce = b'R', "REDUCE", None, 0, "pop args, callable; CALL callable(*args); push the result";
    Build = b'b', "BUILD", None, 0, "pop state; set it on the object below (__setstate__ or __dict__)";
    Inst = b'i', "INST", StringNlNoEscapePair, 0, "IMPORT module.name; pop to mark; CALL it with them; push the result";
    Obj = b'o', "OBJ", None, 1, "pop to mark (class first); CALL class(*args); push the result";
    NewObj = 0x81, "NEWOBJ", None, 2, "pop args, class; CALL class.__new__(class, *args); push the result";
    NewObjEx = 0x92, "NEWOBJ_EX", None, 4, "pop kwargs, args, class; CALL class.__new__(class, *args, **kwargs); push it";
    Proto = 0x80, "PROTO", Uint1, 2, "declare the protocol";
    Stop = b'.', "STOP", None, 0, "pop the result; end of this pickle";
    Frame = 0x95, "FRAME", Uint8, 4, "start a frame of the given length";
    PersId = b'P', "PERSID", StringNlNoEscape, 0, "push persistent_load(id)";
    BinPersId = b'Q', "BINPERSID", None, 1, "pop id; push persistent_load(id)";
}

impl Opcode {
    /// The opcode's byte.
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

    #[test]
    fn every_opcode_is_described() {
        for &op in Opcode::ALL {
            assert!(!op.stack_effect().is_empty(), "{}", op.name());
        }
    }
}
