package io.trellis2lora.local.asl;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Iterator;
import java.util.Set;

/** Choice rules: the comparison operators the runner implements; any other is refused when the definition loads. */
final class Choices {
    static final Set<String> OPERATORS = Set.of("StringEquals", "StringEqualsPath", "StringMatches",
            "NumericEquals", "NumericEqualsPath", "NumericGreaterThan", "NumericGreaterThanEquals", "NumericLessThan",
            "NumericLessThanEquals", "BooleanEquals", "BooleanEqualsPath", "IsPresent", "IsNull", "IsString",
            "IsNumeric", "IsBoolean");

    private Choices() {
    }

    static void check(JsonNode rule, boolean topLevel, String where) {
        for (Iterator<String> it = rule.fieldNames(); it.hasNext(); ) {
            String field = it.next();
            boolean known = OPERATORS.contains(field) || Set.of("Variable", "And", "Or", "Not", "Comment").contains(field)
                    || (topLevel && field.equals("Next"));
            if (!known) {
                throw new IllegalArgumentException(where + ": choice field '" + field + "' is not implemented by the local runner");
            }
        }
        if (rule.has("And") || rule.has("Or")) {
            rule.path(rule.has("And") ? "And" : "Or").forEach(r -> check(r, false, where));
        } else if (rule.has("Not")) {
            check(rule.get("Not"), false, where);
        } else if (!rule.has("Variable")) {
            throw new IllegalArgumentException(where + ": a choice rule needs Variable, And, Or or Not");
        } else {
            JsonPath.parse(rule.get("Variable").asText());
        }
    }

    static boolean matches(JsonNode rule, JsonNode input) throws AslError {
        if (rule.has("And")) {
            for (JsonNode r : rule.get("And")) {
                if (!matches(r, input)) {
                    return false;
                }
            }
            return true;
        }
        if (rule.has("Or")) {
            for (JsonNode r : rule.get("Or")) {
                if (matches(r, input)) {
                    return true;
                }
            }
            return false;
        }
        if (rule.has("Not")) {
            return !matches(rule.get("Not"), input);
        }
        String variable = rule.get("Variable").asText();
        if (rule.has("IsPresent")) {
            return JsonPath.exists(input, variable) == rule.get("IsPresent").asBoolean();
        }
        JsonNode value = JsonPath.read(input, variable);
        for (String op : OPERATORS) {
            if (!rule.has(op)) {
                continue;
            }
            JsonNode operand = rule.get(op);
            if (op.endsWith("Path")) {
                operand = JsonPath.read(input, operand.asText());
                op = op.substring(0, op.length() - 4);
            }
            switch (op) {
                case "StringEquals":
                    return value.isTextual() && value.asText().equals(operand.asText());
                case "StringMatches":
                    return value.isTextual() && value.asText().matches(globToRegex(operand.asText()));
                case "NumericEquals":
                    return value.isNumber() && value.decimalValue().compareTo(operand.decimalValue()) == 0;
                case "NumericGreaterThan":
                    return value.isNumber() && value.decimalValue().compareTo(operand.decimalValue()) > 0;
                case "NumericGreaterThanEquals":
                    return value.isNumber() && value.decimalValue().compareTo(operand.decimalValue()) >= 0;
                case "NumericLessThan":
                    return value.isNumber() && value.decimalValue().compareTo(operand.decimalValue()) < 0;
                case "NumericLessThanEquals":
                    return value.isNumber() && value.decimalValue().compareTo(operand.decimalValue()) <= 0;
                case "BooleanEquals":
                    return value.isBoolean() && value.asBoolean() == operand.asBoolean();
                case "IsNull":
                    return value.isNull() == operand.asBoolean();
                case "IsString":
                    return value.isTextual() == operand.asBoolean();
                case "IsNumeric":
                    return value.isNumber() == operand.asBoolean();
                case "IsBoolean":
                    return value.isBoolean() == operand.asBoolean();
                default:
                    break;
            }
        }
        throw AslError.runtime("choice rule without a comparison: " + rule);
    }

    /** Step Functions' StringMatches glob: '*' matches anything, '\*' a literal star. */
    static String globToRegex(String glob) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < glob.length(); i++) {
            char c = glob.charAt(i);
            if (c == '\\' && i + 1 < glob.length()) {
                sb.append(java.util.regex.Pattern.quote(String.valueOf(glob.charAt(++i))));
            } else if (c == '*') {
                sb.append(".*");
            } else {
                sb.append(java.util.regex.Pattern.quote(String.valueOf(c)));
            }
        }
        return sb.toString();
    }
}
