//! Unit tests for shell-word expansion: one group per rule, then a property test that no
//! input makes any entry point panic.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

fn standard_env() -> Vec<(String, String)> {
    env(&[("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")])
}

fn word(input: &str) -> Result<String, ShellError> {
    ShellLex::new('\\').process_word(input, &standard_env())
}

fn expanded(input: &str) -> String {
    match word(input) {
        Ok(value) => value,
        Err(error) => format!("ERROR: {error}"),
    }
}

fn error_message(input: &str, vars: &[(&str, &str)]) -> String {
    match ShellLex::new('\\').process_word(input, &env(vars)) {
        Ok(value) => format!("unexpected success: {value:?}"),
        Err(error) => error.message,
    }
}

fn words(input: &str, vars: &[(&str, &str)]) -> Vec<String> {
    match ShellLex::new('\\').process_words(input, &env(vars)) {
        Ok(words) => words,
        Err(error) => vec![format!("ERROR: {error}")],
    }
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

fn owned_lookup<L: VarLookup>(lookup: L, name: &str) -> Option<String> {
    lookup.lookup(name).map(str::to_owned)
}

#[test]
fn lookups_from_every_container() {
    let pairs = env(&[("A", "1"), ("A", "2")]);
    assert_eq!(pairs.lookup("A"), Some("2"), "last entry wins");
    assert_eq!(pairs.as_slice().lookup("A"), Some("2"));
    assert_eq!(pairs.lookup("B"), None);
    let tree: BTreeMap<String, String> = pairs.iter().cloned().collect();
    assert_eq!(tree.lookup("A"), Some("2"));
    let hash: HashMap<String, String> = pairs.iter().cloned().collect();
    assert_eq!(hash.lookup("A"), Some("2"));
    assert_eq!(owned_lookup(&hash, "A"), Some("2".to_owned()));
}

#[test]
fn single_quotes_are_literal() {
    assert_eq!(expanded("'$PWD \\t ${'"), "$PWD \\t ${");
    assert_eq!(expanded("'\"hello\"'"), "\"hello\"");
    assert_eq!(error_message("'abc", &[]), "unexpected end of statement while looking for matching single-quote");
}

#[test]
fn double_quotes_expand_and_escape_only_some_characters() {
    assert_eq!(expanded("\"he'$PWD'\""), "he'/home'");
    assert_eq!(expanded("\"a\\$PWD\\\"\\\\b\""), "a$PWD\"\\b");
    assert_eq!(expanded("\"hello\\there\""), "hello\\there");
    assert_eq!(error_message("\"abc\\\"", &[]), "unexpected end of statement while looking for matching double-quote");
}

#[test]
fn escape_outside_quotes_makes_next_char_literal() {
    assert_eq!(expanded("abc\\tdef"), "abctdef");
    assert_eq!(expanded("he\\$PWD"), "he$PWD");
    assert_eq!(expanded("he\\\\$PWD"), "he\\/home");
    assert_eq!(expanded("hello\\"), "hello");
    assert_eq!(expanded("he\\'llo"), "he'llo");
}

#[test]
fn backtick_escape_character() {
    let lex = ShellLex::new('`');
    let vars = standard_env();
    assert_eq!(lex.process_word("a`$PWD", &vars), Ok("a$PWD".to_owned()));
    assert_eq!(lex.process_word("a\\$PWD", &vars), Ok("a\\/home".to_owned()));
    assert_eq!(lex.process_word("\"a``b`\"\"", &vars), Ok("a`b\"".to_owned()));
    assert_eq!(lex.process_word("c:\\dir", &vars), Ok("c:\\dir".to_owned()));
}

#[test]
fn plain_references() {
    assert_eq!(expanded("he$PWD"), "he/home");
    assert_eq!(expanded("he${PWD}x"), "he/homex");
    assert_eq!(expanded("he$pwd."), "he.");
    assert_eq!(expanded("$KOREAN!"), "한국어!");
    assert_eq!(expanded("$.x"), "$.x");
    assert_eq!(expanded("a$"), "a$");
    assert_eq!(expanded("${aaa}}"), "}");
}

#[test]
fn positional_and_special_parameters_are_names() {
    assert_eq!(expanded("$1x"), "x");
    assert_eq!(expanded("$999aaa"), "aaa");
    assert_eq!(expanded("$@@@"), "@@");
    assert_eq!(expanded("${#:-bbb}"), "bbb");
    assert_eq!(expanded("${$:+bbb}"), "");
    let lex = ShellLex::new('\\');
    let expansion = lex.process_word_with_matches("$1 $@ ${001}", &env(&[]));
    assert_eq!(expansion.map(|e| e.unmatched), Ok(names(&["1", "@", "001"])));
}

#[test]
fn unicode_letters_make_names() {
    let vars = env(&[("한국", "korea"), ("x٣", "digits")]);
    let lex = ShellLex::new('\\');
    assert_eq!(lex.process_word("$한국!", &vars), Ok("korea!".to_owned()));
    assert_eq!(lex.process_word("${x٣}", &vars), Ok("digits".to_owned()));
}

#[test]
fn default_operators() {
    assert_eq!(expanded("${XXX:-000}"), "000");
    assert_eq!(expanded("${NULL:-000}"), "000");
    assert_eq!(expanded("${NULL-000}"), "");
    assert_eq!(expanded("${XXX-000}"), "000");
    assert_eq!(expanded("${PWD:-000}"), "/home");
    assert_eq!(expanded("${XXX:-${YYY:-$SHELL}}"), "bash");
    assert_eq!(expanded("${XXX:-\\$PWD:}"), "$PWD:");
    assert_eq!(expanded("${aaa:-bbb {foo}"), "bbb {foo");
}

#[test]
fn alternative_operators() {
    assert_eq!(expanded("${PWD:+000}"), "000");
    assert_eq!(expanded("${NULL:+000}"), "");
    assert_eq!(expanded("${NULL+000}"), "000");
    assert_eq!(expanded("${XXX+000}"), "");
    assert_eq!(expanded("${PWD:+${SHELL}}"), "bash");
}

#[test]
fn mandatory_operators_and_their_messages() {
    assert_eq!(expanded("${PWD:?boom}"), "/home");
    assert_eq!(expanded("${NULL?boom}"), "");
    assert_eq!(error_message("${X?}", &[]), "X: is not allowed to be unset");
    assert_eq!(error_message("${X:?}", &[]), "X: is not allowed to be unset");
    assert_eq!(error_message("${X:?}", &[("X", "")]), "X: is not allowed to be empty");
    assert_eq!(error_message("${X:?need $Y here}", &[("Y", "a value")]), "X: need a value here");
    assert_eq!(error_message("${X?gone}", &[]), "X: gone");
}

#[test]
fn prefix_removal() {
    let vars = [("FOO", "xxyy"), ("BAR", "x")];
    let lex = ShellLex::new('\\');
    let expand = |input: &str| lex.process_word(input, &env(&vars));
    assert_eq!(expand("${FOO#x}"), Ok("xyy".to_owned()));
    assert_eq!(expand("${FOO#*x}"), Ok("xyy".to_owned()));
    assert_eq!(expand("${FOO##*x}"), Ok("yy".to_owned()));
    assert_eq!(expand("${FOO#*x*y}"), Ok("y".to_owned()));
    assert_eq!(expand("${FOO#*}"), Ok("xxyy".to_owned()));
    assert_eq!(expand("${FOO##*}"), Ok("".to_owned()));
    assert_eq!(expand("${FOO#$BAR}"), Ok("xyy".to_owned()));
    assert_eq!(expand("${FOO#z}"), Ok("xxyy".to_owned()));
    assert_eq!(expand("${FOO#}"), Ok("xxyy".to_owned()));
    assert_eq!(expand("${FOO#?x}"), Ok("yy".to_owned()));
}

#[test]
fn suffix_removal() {
    let vars = [("FOO", "xxyy"), ("STARS", "a***yy*")];
    let lex = ShellLex::new('\\');
    let expand = |input: &str| lex.process_word(input, &env(&vars));
    assert_eq!(expand("${FOO%y}"), Ok("xxy".to_owned()));
    assert_eq!(expand("${FOO%y*}"), Ok("xxy".to_owned()));
    assert_eq!(expand("${FOO%%y*}"), Ok("xx".to_owned()));
    assert_eq!(expand("${FOO%%*}"), Ok("".to_owned()));
    assert_eq!(expand("${STARS%%\\**\\*}"), Ok("a".to_owned()));
    assert_eq!(expand("${STARS%\\**\\*}"), Ok("a**".to_owned()));
    assert_eq!(expand("${FOO%}"), Ok("xxyy".to_owned()));
}

#[test]
fn patterns_escape_regex_characters_and_have_no_brackets() {
    let vars = [("FOO", "()[]{}^$.*?|\\x"), ("B", "[a]b")];
    let lex = ShellLex::new('\\');
    let expand = |input: &str| lex.process_word(input, &env(&vars));
    assert_eq!(expand("${FOO#()[]{\\}^$.\\*\\?|\\\\}"), Ok("x".to_owned()));
    assert_eq!(expand("${B#[a]}"), Ok("b".to_owned()));
    assert_eq!(error_message("${FOO#\\x}", &vars), "invalid pattern (\\x) in substitution: invalid escape '\\x'");
}

#[test]
fn colon_with_pattern_operators_is_unsupported() {
    assert_eq!(error_message("${FOO:#x}", &[]), "unsupported modifier (:#) in substitution");
    assert_eq!(error_message("${FOO:%%x}", &[]), "unsupported modifier (:%) in substitution");
}

#[test]
fn replacement() {
    let vars = [("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("REPLACEMENT", "/"), ("PATH_", "/tmp/foo.txt")];
    let lex = ShellLex::new('\\');
    let expand = |input: &str| lex.process_word(input, &env(&vars));
    assert_eq!(
        expand("${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}"),
        Ok("/foo/b/c.txt - /foo/c.txt".to_owned())
    );
    assert_eq!(expand("${FOO/o/0}"), Ok("/a/f0o/b/c.txt".to_owned()));
    assert_eq!(expand("${FOO//o/0}"), Ok("/a/f00/b/c.txt".to_owned()));
    assert_eq!(expand("${FOO/*\\//}"), Ok("c.txt".to_owned()));
    assert_eq!(expand("${PATH_//\\//\\/}"), Ok("\\/tmp\\/foo.txt".to_owned()));
    assert_eq!(expand("${UNSET/a/b}"), Ok("".to_owned()));
    assert_eq!(expand("${FOO///}"), Ok("/a/foo/b/c.txt".to_owned()));
    assert_eq!(error_message("${FOO//ww}", &vars), "syntax error: missing '/' in ${}");
    assert_eq!(error_message("${FOO/a/b", &vars), "syntax error: missing '}'");
}

#[test]
fn syntax_errors() {
    assert_eq!(error_message("${}", &[]), "syntax error: bad substitution");
    assert_eq!(error_message("${:+x}", &[]), "syntax error: bad substitution");
    assert_eq!(error_message("${{a}", &[]), "syntax error: bad substitution");
    assert_eq!(error_message("${", &[]), "syntax error: missing '}'");
    assert_eq!(error_message("he${PWD", &[]), "syntax error: missing '}'");
    assert_eq!(error_message("${a:-b", &[]), "syntax error: missing '}'");
    assert_eq!(error_message("${a:", &[]), "syntax error: missing '}'");
    assert_eq!(error_message("${.}", &[]), "unsupported modifier (.) in substitution");
    assert_eq!(error_message("${a:YYY}", &[]), "unsupported modifier (:Y) in substitution");
    assert_eq!(error_message("${a=b}", &[]), "unsupported modifier (=) in substitution");
}

#[test]
fn error_offsets_are_char_offsets() {
    let lex = ShellLex::new('\\');
    let failure = lex.process_word("한국${", &env(&[]));
    assert_eq!(failure.map_err(|e| e.offset), Err(4));
    let failure = lex.process_word("ab${X:?}cd", &env(&[]));
    assert_eq!(failure.map_err(|e| e.offset), Err(8));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let depth = MAX_NESTING + 50;
    let input = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
    assert!(word(&input).is_err());
    let depth = MAX_NESTING - 1;
    let input = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
    assert_eq!(word(&input), Ok("x".to_owned()));
}

#[test]
fn an_expansion_longer_than_the_limit_is_an_error() {
    let lex = ShellLex::new('\\');
    let half = "x".repeat(MAX_EXPANDED_BYTES / 2);
    let vars = env(&[("A", &half)]);
    // Exactly at the limit is fine, one byte over is not, quoted or not.
    assert_eq!(lex.process_word("${A}$A", &vars).map(|v| v.len()), Ok(MAX_EXPANDED_BYTES));
    for input in ["x${A}${A}", "\"${A}$A$A\"", "${B:-$A$A$A}"] {
        let error = lex.process_word(input, &vars).err();
        assert!(error.is_some_and(|e| e.message.contains("variable expansion is too long")), "{input}");
    }
    // A global replacement that multiplies the value stops at the limit too.
    let error = lex.process_word("${A//x/yyy}", &vars).err();
    assert!(error.is_some_and(|e| e.message.contains("too long")));
}

#[test]
fn matches_are_tracked() {
    let lex = ShellLex::new('\\');
    let vars = env(&[("FOO", "xxx"), ("BAR", "")]);
    let expansion = lex.process_word_with_matches("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", &vars);
    assert_eq!(
        expansion,
        Ok(Expansion { value: "xxx  ccc".to_owned(), matched: names(&["FOO", "BAR"]), unmatched: names(&["BAZ"]) })
    );
}

#[test]
fn words_split_on_unquoted_whitespace() {
    let vars = [("space", "abc  def"), ("leading", "  ab c"), ("trailing", "ab c   ")];
    assert_eq!(words("hello${space}bye", &vars), ["helloabc", "defbye"]);
    assert_eq!(words("hello\"${space}\"bye", &vars), ["helloabc  defbye"]);
    assert_eq!(words("hello${leading}def", &vars), ["hello", "ab", "cdef"]);
    assert_eq!(words("hello${trailing}d", &vars), ["helloab", "c", "d"]);
    assert_eq!(words("hello\\\" there", &vars), ["hello\"", "there"]);
    assert_eq!(words("  a \t b\n", &vars), ["a", "b"]);
    assert_eq!(words("a\\ b", &vars), ["a b"]);
}

#[test]
fn empty_quotes_make_no_word_like_buildkit() {
    assert_eq!(words("\"\"", &[]), Vec::<String>::new());
    assert_eq!(words("a \"\" b", &[]), ["a", "b"]);
    assert_eq!(words("a''b", &[]), ["ab"]);
}

#[test]
fn raw_quotes_keep_quote_characters() {
    let lex = ShellLex::new('\\').raw_quotes(true);
    let vars = standard_env();
    assert_eq!(lex.process_word("'a $PWD' \"$SHELL\"", &vars), Ok("'a $PWD' \"bash\"".to_owned()));
    assert_eq!(lex.process_words("'a b' \"c d\"", &vars), Ok(vec!["'a b'".to_owned(), "\"c d\"".to_owned()]));
}

#[test]
fn raw_escapes_keep_escape_characters() {
    let lex = ShellLex::new('\\').raw_escapes(true);
    let vars = standard_env();
    assert_eq!(lex.process_word("a\\$PWD\\ b", &vars), Ok("a\\$PWD\\ b".to_owned()));
    assert_eq!(lex.process_word("\"a\\$PWD\"", &vars), Ok("a\\$PWD".to_owned()));
    // Words inside `${X:-...}` drop their escapes even in raw mode, as in BuildKit.
    assert_eq!(lex.process_word("${X:-\\$}", &vars), Ok("$".to_owned()));
}

#[test]
fn skip_unset_env_leaves_references_as_written() {
    let lex = ShellLex::new('\\').skip_unset_env(true);
    let vars = standard_env();
    let expand = |input: &str| lex.process_word(input, &vars);
    assert_eq!(expand("$PWD $XXX"), Ok("/home $XXX".to_owned()));
    assert_eq!(expand("${XXX}"), Ok("${XXX}".to_owned()));
    assert_eq!(expand("${XXX:-$PWD}"), Ok("${XXX:-/home}".to_owned()));
    assert_eq!(expand("${XXX?}"), Ok("${XXX?}".to_owned()));
    assert_eq!(expand("${XXX##*x}"), Ok("${XXX##*x}".to_owned()));
    assert_eq!(expand("${XXX/a/b}"), Ok("${XXX/a/b}".to_owned()));
    assert_eq!(expand("${NULL:-x}"), Ok("x".to_owned()));
}

#[test]
fn skip_process_quotes_treats_quotes_as_text() {
    let lex = ShellLex::new('\\').skip_process_quotes(true);
    let vars = standard_env();
    assert_eq!(lex.process_word("'$PWD' \"x\"", &vars), Ok("'/home' \"x\"".to_owned()));
}

#[test]
fn leading_byte_order_mark_is_ignored() {
    assert_eq!(expanded("\u{FEFF}$SHELL"), "bash");
    assert_eq!(expanded("a\u{FEFF}"), "a\u{FEFF}");
}

fn shell_heavy_text() -> impl Strategy<Value = String> {
    prop_oneof!["[-\\\\`'\"${}:#%/?*+=@!_ a-cA-C0-9\\t\\n한국\\[\\]]{0,40}", any::<String>(),]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn no_input_panics(input in shell_heavy_text(), value in shell_heavy_text(), backtick: bool,
                       raw_quotes: bool, raw_escapes: bool, skip_unset: bool) {
        let escape = if backtick { '`' } else { '\\' };
        let lex = ShellLex::new(escape)
            .raw_quotes(raw_quotes)
            .raw_escapes(raw_escapes)
            .skip_unset_env(skip_unset);
        let vars = env(&[("a", &value), ("A", ""), ("B", "x y"), ("b", "*")]);
        let single = lex.process_word(&input, &vars);
        let with_matches = lex.process_word_with_matches(&input, &vars);
        let split = lex.process_words(&input, &vars);
        prop_assert_eq!(single.clone(), with_matches.map(|expansion| expansion.value));
        prop_assert_eq!(single.is_ok(), split.is_ok());
        if let Err(error) = single {
            prop_assert!(error.offset <= input.chars().count());
        }
    }
}
