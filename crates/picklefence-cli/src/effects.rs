//! What each opcode does to the unpickler's stack, in words, for the disassembly.

use picklefence::Opcode;

/// A short description of `opcode`'s stack effect (pickletools' `stack_before -> stack_after`).
pub fn stack_effect(opcode: Opcode) -> &'static str {
    match opcode {
        Opcode::Int => "push an int (or bool for 00/01)",
        Opcode::BinInt | Opcode::BinInt1 | Opcode::BinInt2 => "push an int",
        Opcode::Long | Opcode::Long1 | Opcode::Long4 => "push an int",
        Opcode::String | Opcode::BinString | Opcode::ShortBinString => "push a Python 2 str",
        Opcode::BinBytes | Opcode::ShortBinBytes | Opcode::BinBytes8 => "push bytes",
        Opcode::ByteArray8 => "push a bytearray",
        Opcode::NextBuffer => "push the next out-of-band buffer",
        Opcode::ReadonlyBuffer => "make the buffer on top read-only",
        Opcode::None => "push None",
        Opcode::NewTrue => "push True",
        Opcode::NewFalse => "push False",
        Opcode::Unicode | Opcode::ShortBinUnicode | Opcode::BinUnicode | Opcode::BinUnicode8 => "push a str",
        Opcode::Float | Opcode::BinFloat => "push a float",
        Opcode::EmptyList => "push []",
        Opcode::Append => "pop a value; append it to the list below",
        Opcode::Appends => "pop to mark; extend the list below the mark",
        Opcode::List => "pop to mark; push them as a list",
        Opcode::EmptyTuple => "push ()",
        Opcode::Tuple => "pop to mark; push them as a tuple",
        Opcode::Tuple1 => "pop 1; push a 1-tuple",
        Opcode::Tuple2 => "pop 2; push a 2-tuple",
        Opcode::Tuple3 => "pop 3; push a 3-tuple",
        Opcode::EmptyDict => "push {}",
        Opcode::Dict => "pop to mark; push key/value pairs as a dict",
        Opcode::SetItem => "pop key, value; set it in the dict below",
        Opcode::SetItems => "pop to mark; set key/value pairs in the dict below the mark",
        Opcode::EmptySet => "push set()",
        Opcode::AddItems => "pop to mark; add them to the set below the mark",
        Opcode::FrozenSet => "pop to mark; push them as a frozenset",
        Opcode::Pop => "discard the top of the stack (or a mark)",
        Opcode::Dup => "push a copy of the top",
        Opcode::Mark => "push a mark",
        Opcode::PopMark => "pop to mark and discard",
        Opcode::Get | Opcode::BinGet | Opcode::LongBinGet => "push the memo entry",
        Opcode::Put | Opcode::BinPut | Opcode::LongBinPut => "store the top in the memo",
        Opcode::Memoize => "store the top in the memo at the next index",
        Opcode::Ext1 | Opcode::Ext2 | Opcode::Ext4 => {
            "IMPORT through the copyreg extension registry; push it"
        }
        Opcode::Global => "IMPORT module.name; push it",
        Opcode::StackGlobal => "pop module, name; IMPORT module.name; push it",
        Opcode::Reduce => "pop args, callable; CALL callable(*args); push the result",
        Opcode::Build => "pop state; set it on the object below (__setstate__ or __dict__)",
        Opcode::Inst => "IMPORT module.name; pop to mark; CALL it with them; push the result",
        Opcode::Obj => "pop to mark (class first); CALL class(*args); push the result",
        Opcode::NewObj => "pop args, class; CALL class.__new__(class, *args); push the result",
        Opcode::NewObjEx => "pop kwargs, args, class; CALL class.__new__(class, *args, **kwargs); push it",
        Opcode::Proto => "declare the protocol",
        Opcode::Stop => "pop the result; end of this pickle",
        Opcode::Frame => "start a frame of the given length",
        Opcode::PersId => "push persistent_load(id)",
        Opcode::BinPersId => "pop id; push persistent_load(id)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opcode_is_described() {
        for &op in Opcode::ALL {
            assert!(!stack_effect(op).is_empty(), "{}", op.name());
        }
    }
}
