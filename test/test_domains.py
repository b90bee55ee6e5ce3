"""The test suite's ROS domain reservation (conftest.py): ids held at once are distinct."""
def test_domain_reservations_held_at_once_never_share_an_id():
    from conftest import _locked_domain

    with _locked_domain() as a, _locked_domain() as b, _locked_domain() as c:
        assert len({a, b, c}) == 3 and all(1 <= d <= 100 for d in (a, b, c))
    with _locked_domain() as again:  # released ones can be taken again
        assert 1 <= again <= 100
