# The KEY=VALUE grammar of env files (shared/env, RELEASE_ENV_FILE, env-file), stated once:
# this text is part of both the launcher and the deploy host script.
# - one variable per line: KEY=VALUE, optionally after `export `; blanks around KEY ignored;
# - a trailing CR is dropped (files written on Windows); blank lines and `#` lines skipped;
# - VALUE is data, never evaluated; one pair of surrounding "…" or '…' is removed;
# - a line that is not KEY=VALUE, or a KEY that is not a variable name, is an error naming
#   the file and line;
# - a variable already set in the environment wins over the file.
# Exported variables' names are appended to rb_file_keys. Needs rb_die.

# Is the variable named $1 set (possibly empty)? Names are validated before they get here.
rb_isset() { eval "[ -n \"\${$1+x}\" ]"; }

rb_parse_env_file() {
  rb_lineno=0
  while IFS= read -r rb_line || [ -n "$rb_line" ]; do
    rb_lineno=$((rb_lineno + 1))
    rb_line=${rb_line%"$(printf '\r')"}
    rb_line=${rb_line#"${rb_line%%[![:space:]]*}"}
    case $rb_line in ''|'#'*) continue ;; esac
    case $rb_line in export[[:space:]]*) rb_line=${rb_line#export}; rb_line=${rb_line#"${rb_line%%[![:space:]]*}"} ;; esac
    case $rb_line in *=*) ;; *) rb_die "$1:$rb_lineno: expected KEY=VALUE" ;; esac
    rb_key=${rb_line%%=*}
    rb_value=${rb_line#*=}
    rb_key=${rb_key%"${rb_key##*[![:space:]]}"}
    case $rb_key in
      ''|[0-9]*|*[!A-Za-z0-9_]*) rb_die "$1:$rb_lineno: invalid variable name '$rb_key'" ;;
    esac
    case $rb_value in
      \"*\") rb_value=${rb_value#\"}; rb_value=${rb_value%\"} ;;
      \'*\') rb_value=${rb_value#\'}; rb_value=${rb_value%\'} ;;
    esac
    if ! rb_isset "$rb_key"; then
      export "$rb_key=$rb_value"
      rb_file_keys="${rb_file_keys:-} $rb_key"
    fi
  done < "$1"
}
