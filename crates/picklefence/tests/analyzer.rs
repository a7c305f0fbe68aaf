//! The symbolic stack machine on hand-made pickles: what it must flag and what it must pass.

use picklefence::{analyze_reader, analyze_slice, FindingKind, Mode, Options, PickleReport, Policy};

fn scan(data: &[u8]) -> PickleReport {
    analyze_slice(data, &Policy::default(), &Options::default())
}

fn kinds(report: &PickleReport) -> Vec<FindingKind> {
    report.violations().map(|f| f.kind).collect()
}

fn flagged_import(report: &PickleReport) -> Vec<String> {
    report
        .violations()
        .filter_map(|f| f.import.as_ref().map(|i| i.to_string()))
        .collect()
}

/// SHORT_BINUNICODE of `s`.
fn su(s: &str) -> Vec<u8> {
    let mut out = vec![0x8c, s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn every_protocol_of_os_system_reduce_is_flagged() {
    let payloads: [&[u8]; 4] = [
        b"cposix\nsystem\np0\n(Vtrue\np1\ntp2\nRp3\n.",
        b"cposix\nsystem\nq\x00(X\x04\x00\x00\x00trueq\x01tq\x02Rq\x03.",
        b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.",
        b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x04true\x94\x85\x94R\x94.",
    ];
    for payload in payloads {
        let report = scan(payload);
        assert!(!report.is_safe(), "{payload:?}");
        assert_eq!(flagged_import(&report), vec!["posix.system"]);
        assert_eq!(report.calls.len(), 1);
        assert_eq!(report.pickles.len(), 1);
        assert!(report.pickles[0].end.is_some());
    }
}

#[test]
fn plain_data_is_clean() {
    // pickle.dumps({'a': [1, 2.5, None, True], 'b': (b'x', 'y')}, protocol=4)
    let data = b"\x80\x04\x95%\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00N\x88e\x8c\x01b\x94C\x01x\x94\x8c\x01y\x94\x86\x94u.";
    let report = scan(data);
    assert!(report.is_safe(), "{:?}", report.findings);
    assert!(report.imports.is_empty());
}

#[test]
fn python2_names_are_mapped_before_the_policy_sees_them() {
    let report = scan(b"c__builtin__\neval\n(Vprint(1)\ntR.");
    assert_eq!(flagged_import(&report), vec!["builtins.eval"]);
    let written = report.imports[0].written_as.as_ref().map(|w| w.to_string());
    assert_eq!(written.as_deref(), Some("__builtin__.eval"));
    let report = scan(b"ccommands\ngetoutput\n(Vid\ntR.");
    assert_eq!(flagged_import(&report), vec!["subprocess.getoutput"]);
    // Protocol 3+ does not map: `__builtin__` is then looked up as is.
    let report = scan(b"\x80\x03c__builtin__\nset\n)R.");
    assert_eq!(flagged_import(&report), vec!["__builtin__.set"]);
}

#[test]
fn stack_global_resolves_through_memo_and_dup() {
    // Module and name come back from the memo.
    let data = cat(&[
        b"\x80\x04",
        &su("os"),
        b"\x94",
        &su("system"),
        b"\x94",
        b"0",
        b"0",
        b"h\x00h\x01\x93",
        &su("true"),
        b"\x85R.",
    ]);
    let report = scan(&data);
    assert_eq!(flagged_import(&report), vec!["os.system"]);
    // DUP: "os" "os" -> import os.os (flagged as os.os; still the os module)
    let data = cat(&[b"\x80\x04", &su("os"), b"2\x93."]);
    assert_eq!(flagged_import(&scan(&data)), vec!["os.os"]);
}

#[test]
fn memo_overwrite_is_followed() {
    // Memo 0 first holds "collections", then is overwritten with "os".
    let data = cat(&[
        b"\x80\x04",
        &su("collections"),
        b"q\x000",
        &su("os"),
        b"q\x000",
        b"h\x00",
        &su("system"),
        b"\x93.",
    ]);
    assert_eq!(flagged_import(&scan(&data)), vec!["os.system"]);
}

#[test]
fn memoize_after_pop_stores_what_is_really_on_top() {
    // Push "collections", push "os", POP, MEMOIZE -> memo 0 = "collections"; then GET 0 + "OrderedDict".
    let data = cat(&[
        b"\x80\x04",
        &su("collections"),
        &su("os"),
        b"0\x94",
        b"h\x00",
        &su("OrderedDict"),
        b"\x93)R.",
    ]);
    let report = scan(&data);
    assert!(report.is_safe(), "{:?}", report.findings);
    // And the other way round, memoizing "os" after popping "collections" the attacker pushed last.
    let data = cat(&[
        b"\x80\x04",
        &su("os"),
        &su("collections"),
        b"0\x94",
        b"h\x00",
        &su("system"),
        b"\x93.",
    ]);
    assert_eq!(flagged_import(&scan(&data)), vec!["os.system"]);
}

#[test]
fn stack_global_from_non_constants_fails_closed() {
    // Operands from protocol-0 STRING: ASCII reads the same under every str encoding (and
    // `encoding="bytes"` makes STACK_GLOBAL fail), so the import is resolved; non-ASCII
    // depends on the encoding.
    let data = b"\x80\x04S'os'\nS'system'\n\x93.";
    assert_eq!(flagged_import(&scan(data)), vec!["os.system"]);
    let data = b"\x80\x04S'os'\nS'syst\\xe8m'\n\x93.";
    assert_eq!(kinds(&scan(data)), vec![FindingKind::UnresolvableImport]);
    // From a call result.
    let data = cat(&[b"\x80\x04cbuiltins\nset\n)R", &su("x"), b"\x93."]);
    assert!(kinds(&scan(&data)).contains(&FindingKind::UnresolvableImport));
    let data = cat(&[b"\x80\x04C\x02os", &su("system"), b"\x93."]);
    assert!(kinds(&scan(&data)).contains(&FindingKind::UnresolvableImport));
}

#[test]
fn build_on_an_import_is_state_injection() {
    // GLOBAL collections OrderedDict (allowed) then BUILD {} on the class itself.
    let data = b"\x80\x02ccollections\nOrderedDict\n}b.";
    let report = scan(data);
    assert_eq!(kinds(&report), vec![FindingKind::StateInjection]);
    // BUILD on a call result is fine.
    let report = scan(b"\x80\x02ccollections\nOrderedDict\n)R}b.");
    assert!(report.is_safe(), "{:?}", report.findings);
    // SETITEM into an imported object.
    let report = scan(b"\x80\x02ccollections\nOrderedDict\nK\x01K\x02s.");
    assert_eq!(kinds(&report), vec![FindingKind::StateInjection]);
}

#[test]
fn dotted_names_through_allowed_modules_are_blocked() {
    let data = cat(&[
        b"\x80\x04",
        &su("collections"),
        &su("OrderedDict.__init__.__globals__"),
        b"\x93.",
    ]);
    assert_eq!(
        flagged_import(&scan(&data)),
        vec!["collections.OrderedDict.__init__.__globals__"]
    );
    let data = cat(&[
        b"\x80\x04",
        &su("collections"),
        &su("OrderedDict.fromkeys"),
        b"\x93.",
    ]);
    assert_eq!(kinds(&scan(&data)), vec![FindingKind::DisallowedImport]);
}

#[test]
fn ext_codes_are_violations() {
    let report = scan(b"\x80\x02\x82\x01)R.");
    assert!(kinds(&report).contains(&FindingKind::ExtensionCode));
    assert_eq!(report.imports[0].ext_code, Some(1));
    let allowing = Policy::default().with_allowed_ext_codes([1]);
    let report = analyze_slice(b"\x80\x02\x82\x01)R.", &allowing, &Options::default());
    assert!(report.is_safe(), "{:?}", report.findings);
}

#[test]
fn a_clean_pickle_followed_by_an_evil_one_is_flagged() {
    let data = cat(&[b"\x80\x02K\x01.", b"cposix\nsystem\n(Vx\ntR."]);
    let report = scan(&data);
    assert_eq!(report.pickles.len(), 2);
    assert_eq!(flagged_import(&report), vec!["posix.system"]);
    // FirstPickle mode stops right after the first STOP.
    let options = Options {
        mode: Mode::FirstPickle,
        ..Options::default()
    };
    let report = analyze_slice(&data, &Policy::default(), &options);
    assert!(report.is_safe());
    assert_eq!(report.consumed, 5);
}

#[test]
fn payload_before_a_break_is_analysed() {
    // nullifAI style: payload, then an invalid opcode.
    let report = scan(b"\x80\x02cposix\nsystem\n(Vx\ntR\xff");
    let found = kinds(&report);
    assert!(found.contains(&FindingKind::DangerousImport));
    assert!(found.contains(&FindingKind::MalformedPickle));
    // Payload, then truncation.
    let report = scan(b"\x80\x02cposix\nsystem\n(Vx\ntRX\x10\x00\x00");
    assert!(kinds(&report).contains(&FindingKind::DangerousImport));
    // Payload, then a GET of a missing memo key.
    let report = scan(b"\x80\x02cposix\nsystem\n(Vx\ntRh\x07.");
    assert!(kinds(&report).contains(&FindingKind::MalformedPickle));
    assert!(kinds(&report).contains(&FindingKind::DangerousImport));
}

#[test]
fn trailing_bytes_are_reported_not_mistaken() {
    let report = scan(b"\x80\x02K\x01.\n\n");
    assert!(report.is_safe());
    assert!(report
        .findings
        .iter()
        .any(|f| f.kind == FindingKind::TrailingData));
    // Empty input is no pickle.
    assert!(!scan(b"").is_safe());
}

#[test]
fn stack_underflow_through_a_mark_breaks_the_stream() {
    // SETITEM reaching below a MARK: CPython's C and Python unpicklers disagree; fail closed.
    let report = scan(b"}(K\x01K\x02s.");
    assert!(kinds(&report).contains(&FindingKind::MalformedPickle));
}

#[test]
fn framing_that_readers_could_disagree_on_is_flagged() {
    // A frame of 2 bytes that ends inside a BININT2 argument.
    let report = scan(b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00M\x01\x00.");
    assert!(kinds(&report).contains(&FindingKind::AmbiguousFraming));
    // A well-formed frame is fine.
    let report = scan(b"\x80\x04\x95\x04\x00\x00\x00\x00\x00\x00\x00M\x01\x00.");
    assert!(report.is_safe(), "{:?}", report.findings);
}

#[test]
fn inst_and_obj_are_imports_and_calls() {
    let report = scan(b"(Vid\niposix\nsystem\n.");
    assert_eq!(flagged_import(&report), vec!["posix.system"]);
    assert_eq!(report.calls[0].opcode, "INST");
    let report = scan(b"(cposix\nsystem\nVid\no.");
    assert_eq!(flagged_import(&report), vec!["posix.system"]);
    assert_eq!(report.calls[0].opcode, "OBJ");
}

#[test]
fn calling_a_call_result_is_flagged() {
    let report = scan(b"\x80\x02cbuiltins\nset\n)R)R.");
    assert!(kinds(&report).contains(&FindingKind::IndirectCall));
}

#[test]
fn limits_end_analysis_with_a_finding() {
    let mut data = vec![b'('; 200_000];
    data.push(b'.');
    let report = scan(&data);
    assert!(kinds(&report).contains(&FindingKind::LimitExceeded));
}

#[test]
fn stream_and_slice_agree_and_stream_stops_after_stop() {
    let data = cat(&[b"\x80\x02cposix\nsystem\n(Vx\ntR.", b"TRAILING"]);
    let options = Options {
        mode: Mode::FirstPickle,
        ..Options::default()
    };
    let mut cursor = std::io::Cursor::new(&data);
    let from_stream = analyze_reader(&mut cursor, &Policy::default(), &options);
    let from_slice = analyze_slice(&data, &Policy::default(), &options);
    assert_eq!(from_stream, from_slice);
    assert_eq!(cursor.position(), data.len() as u64 - 8);
}

#[test]
fn legacy_torch_module_persistent_ids_call_their_class() {
    // ('module', torch.nn.modules.linear.Linear, 'file', 'src') BINPERSID, then NEWOBJ on it.
    let data = b"\x80\x02ctorch.nn.modules.linear\nLinear\nq\x00(X\x06\x00\x00\x00moduleh\x00X\x01\x00\x00\x00fX\x01\x00\x00\x00stQ)\x81}b.";
    let report = scan(data);
    assert!(report.is_safe(), "{:?}", report.findings);
    // The same shape naming a class the policy does not allow is flagged at its import.
    let data = b"\x80\x02cposix\nsystem\nq\x00(X\x06\x00\x00\x00moduleh\x00X\x01\x00\x00\x00fX\x01\x00\x00\x00stQ)\x81.";
    assert_eq!(flagged_import(&scan(data)), vec!["posix.system"]);
}

#[test]
fn over_long_lines_in_streams_are_a_limit_not_a_break() {
    let mut data = b"cmodule".to_vec();
    data.extend(std::iter::repeat_n(b'x', 2 << 20));
    data.extend_from_slice(b"\nname\n.");
    let report = analyze_reader(&data[..], &Policy::default(), &Options::default());
    assert_eq!(kinds(&report), vec![FindingKind::LimitExceeded]);
}

#[test]
fn huge_sparse_memo_keys_are_memory_exhaustion() {
    // LONG_BINPUT 2**31: CPython would grow its memo array to 2**32 slots.
    let report = scan(b"\x80\x02K\x01r\x00\x00\x00\x80.");
    assert_eq!(kinds(&report), vec![FindingKind::LimitExceeded]);
    // Dense keys, as picklers write them, are fine.
    let report = scan(b"\x80\x02K\x01r\x00\x00\x00\x00K\x02r\x01\x00\x00\x000.");
    assert!(report.is_safe(), "{:?}", report.findings);
}

#[test]
fn names_resolve_alike_whatever_their_length() {
    // Short names live inline in the analyzer's values and longer ones on the heap: both, at the
    // boundary, through the memo, and with multi-byte UTF-8, reach the policy unchanged.
    for module in [
        "m",
        "a".repeat(21).as_str(),
        &"b".repeat(22),
        &"c".repeat(23),
        "modulé.sous_modulé_ünïcode",
        "é".repeat(11).as_str(),
    ] {
        for name in ["f", "ñame", &"n".repeat(22), &"n".repeat(200)] {
            let direct = cat(&[b"\x80\x04", &su(module), &su(name), b"\x93."]);
            let memoized = cat(&[
                b"\x80\x04",
                &su(module),
                b"\x94",
                &su(name),
                b"\x94",
                b"00h\x00h\x01\x93.",
            ]);
            for data in [direct, memoized] {
                assert_eq!(flagged_import(&scan(&data)), vec![format!("{module}.{name}")]);
            }
        }
    }
}

#[test]
fn a_text_int_no_reader_accepts_breaks_the_stream_there() {
    // strtol and int(text, 0) both raise on a control byte: the pickle breaks at that INT
    // (and is still analysed past it, for readers that differ elsewhere).
    for (opcode, arg) in [(b'I', &b"279\x12aI280"[..]), (b'L', &b"12\x00L"[..])] {
        let mut data = b"(lp0\nI1\na".to_vec();
        let at = data.len() as u64;
        data.push(opcode);
        data.extend_from_slice(arg);
        data.extend_from_slice(b"\nacos\nsystem\n.");
        let report = scan(&data);
        let broken = report
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::MalformedPickle)
            .unwrap_or_else(|| panic!("{:?}: {:?}", opcode as char, report.findings));
        assert_eq!(broken.offset, at);
        assert!(broken.message.contains("is not a number"), "{}", broken.message);
        assert_eq!(flagged_import(&report), ["os.system"]);
    }
    // What some reader accepts does not break it: hex (strtol), underscores (int()), a sign
    // and whitespace, LONG's L.
    for arg in [&b"0x1f"[..], b"1_000", b" -12 ", b"+7", b"123L"] {
        let data = cat(&[b"I", arg, b"\n."]);
        let report = scan(&data);
        assert!(
            !report
                .findings
                .iter()
                .any(|f| f.kind == FindingKind::MalformedPickle),
            "{:?}: {:?}",
            String::from_utf8_lossy(arg),
            report.findings
        );
    }
}
