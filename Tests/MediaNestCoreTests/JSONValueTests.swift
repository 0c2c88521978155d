import MediaNestCore
import Testing

/// The JSON of the schema's `jsonb` columns: exact integers, sorted keys, text PostgreSQL accepts.
@Suite("JSONValue")
struct JSONValueTests {
    @Test func integersStayIntegersThroughTextAndBack() throws {
        let value: JSONValue = ["size": .int(9_007_199_254_740_993), "duration": 12.5, "whole": .double(3)]
        #expect(value.jsonText == #"{"duration":12.5,"size":9007199254740993,"whole":3}"#)
        let parsed = try JSONValue(parsing: value.jsonText)
        #expect(parsed["size"] == .int(9_007_199_254_740_993), "2^53 + 1 is not rounded through a Double")
        #expect(parsed["duration"]?.doubleValue == 12.5)
    }

    @Test func textIsWhatJsonbAccepts() {
        // jsonb cannot hold U+0000; control characters are \u-escaped; NaN has no JSON form.
        #expect(JSONValue.string("a\u{0}b\u{1}\n\"").jsonText == #""a\ufffdb\u0001\n\"""#)
        #expect(JSONValue.double(.nan).jsonText == "null")
        #expect(JSONValue.double(.infinity).jsonText == "null")
    }

    @Test func malformedTextIsRefusedWithAnOffset() {
        for text in ["{", #"{"a":}"#, "[1,]", "true false", #"{"a" 1}"#, "nul"] {
            #expect(throws: JSONValue.ParseError.self, "\(text)") { try JSONValue(parsing: text) }
        }
        do {
            _ = try JSONValue(parsing: "[1, 2] x")
            Issue.record("trailing characters were accepted")
        } catch let error as JSONValue.ParseError {
            #expect(error.offset == 7, "\(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func subscriptsReadAndWriteObjectMembersOnly() {
        var object: JSONValue = ["stage": "probing"]
        object["fraction"] = 0.5
        #expect(object["fraction"]?.doubleValue == 0.5 && object["stage"]?.stringValue == "probing")
        var array: JSONValue = [1, 2]
        array["x"] = 1
        #expect(array == [1, 2], "a member set on an array changes nothing")
        #expect(JSONValue.int(3).doubleValue == 3 && JSONValue.null.isNull && JSONValue.string("3").intValue == nil)
    }
}
