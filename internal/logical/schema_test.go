package logical

import "testing"

func TestObjectGrant(t *testing.T) {
	for g, want := range map[string]bool{
		"GRANT USAGE ON *.* TO `a`@`%`":                                 false,
		"GRANT SELECT, INSERT ON `shop`.* TO `a`@`%`":                   false,
		"GRANT SELECT ON `shop`.`orders` TO `a`@`%`":                    true,
		"GRANT SELECT (`id`, ` ON `) ON `shop`.`t` TO `a`@`%`":          true,
		"GRANT SELECT (` ON *.* `) ON `s`.`t` TO `a`@`%`":               true,
		"GRANT EXECUTE ON PROCEDURE `shop`.`p` TO `a`@`%`":              true,
		"GRANT EXECUTE ON FUNCTION `sh``op`.`f` TO `a`@`%`":             true,
		"GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION": false,
		"GRANT PROXY ON ``@`` TO `root`@`localhost` WITH GRANT OPTION":  false,
		"GRANT `reader`@`%` TO `app`@`%`":                               false,
		"GRANT `reader` TO `app`@`%`":                                   false,
	} {
		if got := objectGrant(g); got != want {
			t.Errorf("objectGrant(%q) = %v, want %v", g, got, want)
		}
	}
}
