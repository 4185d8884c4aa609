package io.trellis2lora.local.asl;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.TextNode;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/** The intrinsic functions the definition may use ({@code States.Format(...)} and a few others). */
final class Intrinsics {
    static final Set<String> SUPPORTED = Set.of("States.Format", "States.ArrayLength", "States.StringToJson",
            "States.JsonToString", "States.Array");
    private static final ObjectMapper MAPPER = new ObjectMapper();

    private Intrinsics() {
    }

    static boolean isCall(String text) {
        return text.startsWith("States.");
    }

    /** Parses without evaluating: used at load time to refuse functions the runner does not implement. */
    static void check(String expression) {
        new Parser(expression, null, null).parseCall(false);
    }

    static JsonNode evaluate(String expression, JsonNode input, JsonNode context) throws AslError {
        try {
            Parser parser = new Parser(expression, input, context);
            JsonNode value = parser.parseCall(true);
            parser.skipSpaces();
            if (parser.pos != expression.length()) {
                throw new IllegalArgumentException("trailing text after the function call");
            }
            return value;
        } catch (Failure f) {
            throw f.error;
        } catch (IllegalArgumentException e) {
            throw AslError.runtime("intrinsic function '" + expression + "': " + e.getMessage());
        }
    }

    /** Carries an AslError through the recursive-descent parser. */
    private static final class Failure extends RuntimeException {
        final AslError error;

        Failure(AslError error) {
            super(error.getMessage(), null, false, false);
            this.error = error;
        }
    }

    private static final class Parser {
        final String text;
        final JsonNode input;
        final JsonNode context;
        int pos;

        Parser(String text, JsonNode input, JsonNode context) {
            this.text = text;
            this.input = input;
            this.context = context;
        }

        void skipSpaces() {
            while (pos < text.length() && Character.isWhitespace(text.charAt(pos))) {
                pos++;
            }
        }

        JsonNode parseCall(boolean evaluate) {
            skipSpaces();
            int open = text.indexOf('(', pos);
            if (open < 0) {
                throw new IllegalArgumentException("missing '('");
            }
            String name = text.substring(pos, open).trim();
            if (!SUPPORTED.contains(name)) {
                throw new IllegalArgumentException("the local runner does not implement " + name);
            }
            pos = open + 1;
            List<JsonNode> args = new ArrayList<>();
            skipSpaces();
            if (peek() == ')') {
                pos++;
            } else {
                while (true) {
                    args.add(parseArgument(evaluate));
                    skipSpaces();
                    char c = next();
                    if (c == ')') {
                        break;
                    }
                    if (c != ',') {
                        throw new IllegalArgumentException("expected ',' or ')' at " + (pos - 1));
                    }
                }
            }
            return evaluate ? apply(name, args) : null;
        }

        JsonNode parseArgument(boolean evaluate) {
            skipSpaces();
            char c = peek();
            if (c == '\'') {
                pos++;
                StringBuilder sb = new StringBuilder();
                while (true) {
                    char d = next();
                    if (d == '\\') {
                        sb.append(next());
                    } else if (d == '\'') {
                        break;
                    } else {
                        sb.append(d);
                    }
                }
                return TextNode.valueOf(sb.toString());
            }
            if (text.startsWith("States.", pos)) {
                return parseCall(evaluate);
            }
            int start = pos;
            while (pos < text.length() && text.charAt(pos) != ',' && text.charAt(pos) != ')') {
                pos++;
            }
            String token = text.substring(start, pos).trim();
            if (token.startsWith("$$")) {
                JsonPath.parse(token.substring(1));
                return evaluate ? read(context, token.substring(1)) : null;
            }
            if (token.startsWith("$")) {
                JsonPath.parse(token);
                return evaluate ? read(input, token) : null;
            }
            try {
                return MAPPER.readTree(token);
            } catch (Exception e) {
                throw new IllegalArgumentException("cannot read argument '" + token + "'");
            }
        }

        JsonNode read(JsonNode root, String path) {
            try {
                return JsonPath.read(root, path);
            } catch (AslError e) {
                throw new Failure(e);
            }
        }

        char peek() {
            if (pos >= text.length()) {
                throw new IllegalArgumentException("unexpected end");
            }
            return text.charAt(pos);
        }

        char next() {
            char c = peek();
            pos++;
            return c;
        }
    }

    private static JsonNode apply(String name, List<JsonNode> args) {
        switch (name) {
            case "States.Format": {
                if (args.isEmpty() || !args.get(0).isTextual()) {
                    throw new IllegalArgumentException("States.Format needs a template string");
                }
                String template = args.get(0).asText();
                StringBuilder sb = new StringBuilder();
                int used = 1;
                for (int i = 0; i < template.length(); i++) {
                    if (template.startsWith("{}", i)) {
                        if (used >= args.size()) {
                            throw new IllegalArgumentException("States.Format has more {} than arguments");
                        }
                        JsonNode arg = args.get(used++);
                        sb.append(arg.isValueNode() ? arg.asText() : arg.toString());
                        i++;
                    } else {
                        sb.append(template.charAt(i));
                    }
                }
                return TextNode.valueOf(sb.toString());
            }
            case "States.ArrayLength":
                if (args.size() != 1 || !args.get(0).isArray()) {
                    throw new IllegalArgumentException("States.ArrayLength needs one array");
                }
                return JsonNodeFactory.instance.numberNode(args.get(0).size());
            case "States.StringToJson":
                try {
                    return MAPPER.readTree(args.get(0).asText());
                } catch (Exception e) {
                    throw new IllegalArgumentException("States.StringToJson: not JSON");
                }
            case "States.JsonToString":
                return TextNode.valueOf(args.get(0).toString());
            case "States.Array": {
                ArrayNode array = JsonNodeFactory.instance.arrayNode();
                args.forEach(array::add);
                return array;
            }
            default:
                throw new IllegalArgumentException("unknown function " + name);
        }
    }
}
